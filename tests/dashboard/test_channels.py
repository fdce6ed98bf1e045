"""The agent page shows each channel's deposit, charges, escrow, state and transactions as the chain and books hold them.

The channel is real: the agent buys from the x402 SDK's batch-settlement
server and facilitator on our contracts on anvil (as tests/agents/test_channels.py
does), so the deposit is an on-chain transaction and the charges are booked
by the agent's own code. The dashboard reads the agent's SQLite books over
HTTP (httpx.ASGITransport): the page and its CSV/JSON exports must equal the
escrow contract's view, the books' ``booked_sums`` and the Deposited event's
transaction. After a timed withdrawal starts, the channel reads
``withdrawing`` with the time it was requested. The browser test drives
Debian's chromium over uvicorn and keeps a screenshot in tmp_path (the
source of docs/images/dashboard-agent.png).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.agents.channels.books import booked_sums
from farthing.agents.channels.payer import ChannelPayer
from farthing.agents.channels.store import list_channels
from farthing.agents.channels.withdraw import start_withdrawal
from farthing.dashboard import DashboardSettings, Money, create_app
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.wallet.chain import Call, RpcChain
from tests.agents.conftest import World, make_world
from tests.agents.test_channels import PRICE, SETTINGS, client, deposits, sdk_channel_server
from tests.dashboard.conftest import served

pytestmark = pytest.mark.anvil

BUYS = 5
DEPOSIT = 20 * PRICE  # channel_deposit_multiple × price
MONEY = Money(6, "USDC")


@pytest.fixture
def channel_world(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[World]:
    """An agent with one open channel: one deposit, ``BUYS`` charges."""
    place_channel_contracts(anvil_chain)
    world = make_world(anvil_chain, tmp_path, funds=1_000_000, settings=SETTINGS)
    app, _scheme = sdk_channel_server(world)

    async def buy() -> None:
        async with client(world, app) as http:
            for n in range(BUYS):
                response = await http.get(f"http://sdk.test/articles/{n}")
                assert response.status_code == 200, response.text

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, buy()).result(timeout=120)
    yield world
    world.close()


def dashboard(world: World) -> httpx.Client:
    app = create_app(DashboardSettings(database_url=world.database_url), start_verifier=False)
    return httpx.Client(transport=_SyncASGI(app), base_url="http://127.0.0.1")


class _SyncASGI(httpx.BaseTransport):
    """httpx.ASGITransport is async only; each request runs in its own event loop."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=self._asgi) as http:
                answer = await http.send(request)
                await answer.aread()
                return answer

        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(asyncio.run, send()).result(timeout=60)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def test_the_agent_page_shows_the_channel_as_the_chain_and_books_hold_it(
    channel_world: World,
) -> None:
    world = channel_world
    (channel,) = list_channels(world.books)
    cid = channel.channel_id
    escrow = ChannelEscrow(world.chain)
    assert escrow.channel(bytes.fromhex(cid[2:])) == (DEPOSIT, 0)
    assert booked_sums(world.books, cid) == (DEPOSIT, 0, BUYS * PRICE)
    (deposit_log,) = deposits(world, cid)
    with dashboard(world) as http:
        page = http.get("/agents/agent")
        assert page.status_code == 200
        html = page.text
        assert "No payment channels" not in html
        assert f'id="in-escrow-total">{MONEY.format(DEPOSIT - BUYS * PRICE)}<' in html
        assert deposit_log.tx_hash in html and world.merchant.lower() in html

        data = http.get("/export/agent-channels.json", params={"agent": "agent"}).json()
        (row,) = data["rows"]
        assert row["channel_id"] == cid and row["payee"] == world.merchant.lower()
        assert row["state"] == "open" and row["withdraw_requested"] == "-"
        assert (row["deposited_atomic"], row["charged_atomic"]) == (str(DEPOSIT), str(BUYS * PRICE))
        assert (row["returned_atomic"], row["in_escrow_atomic"]) == (
            "0",
            str(DEPOSIT - BUYS * PRICE),
        )
        assert (row["deposited"], row["charged"]) == (
            MONEY.format(DEPOSIT),
            MONEY.format(BUYS * PRICE),
        )
        txs = http.get("/export/agent-channel_transactions.json", params={"agent": "agent"}).json()
        assert [(r["kind"], r["amount_atomic"], r["transaction"]) for r in txs["rows"]] == [
            ("deposit", str(DEPOSIT), deposit_log.tx_hash)
        ]
        exported = http.get("/export/agent-channels.csv", params={"agent": "agent"})
        (csv_row,) = list(csv.DictReader(io.StringIO(exported.text)))
        assert csv_row["in_escrow_atomic"] == str(DEPOSIT - BUYS * PRICE)

        # The agent starts a timed withdrawal (its wallet pays the gas).
        sent = world.chain.send(
            Call(world.agent.address, b"", value=10**18),
            sender=world.chain.dev_accounts()[6].signer(),
        )
        assert sent.ok
        assert start_withdrawal(ChannelPayer(world.payer), cid) == "ok"
        _amount, initiated_at = escrow.pending_withdrawal(bytes.fromhex(cid[2:]))
        (row,) = http.get("/export/agent-channels.json", params={"agent": "agent"}).json()["rows"]
        assert row["state"] == "withdrawing"
        # The books keep when the withdrawal may finish; the page subtracts the
        # delay. The chain's timestamp moves on between the read and the block.
        requested = list_channels(world.books)[0].withdraw_after - channel.config.withdraw_delay_s  # type: ignore[operator]
        assert abs(requested - initiated_at) <= 5
        assert row["withdraw_requested"] != "-" and row["withdraw_after"] != "-"
        # Money is still in escrow until the withdrawal is finalized.
        assert row["in_escrow_atomic"] == str(DEPOSIT - BUYS * PRICE)

        assert (
            http.get("/export/agent-channels.json", params={"agent": "nobody"}).status_code == 404
        )


@pytest.mark.browser
def test_the_channels_table_in_chromium(channel_world: World, browser: Any, tmp_path: Path) -> None:
    world = channel_world
    (channel,) = list_channels(world.books)
    settings = DashboardSettings(database_url=world.database_url, refresh_s=5, verify_interval_s=5)
    with served(settings) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/agents/agent")
        rows = page.locator("#table-channels tbody tr")
        assert rows.count() == 1
        row = rows.first
        assert row.locator(".c-state").inner_text() == "open"
        assert row.locator(".c-deposited").inner_text() == MONEY.format(DEPOSIT)
        assert row.locator(".c-charged").inner_text() == MONEY.format(BUYS * PRICE)
        assert row.locator(".c-in_escrow").inner_text() == MONEY.format(DEPOSIT - BUYS * PRICE)
        assert row.locator(".c-channel").inner_text().startswith(channel.channel_id[:10])
        txs = page.locator("#table-channel_transactions tbody tr")
        assert txs.count() == 1 and "deposit" in txs.first.inner_text()
        page.screenshot(path=str(tmp_path / "agent-channels.png"), full_page=True)
        page.close()
