"""The agent pays through batch-settlement channels: the x402 SDK's own server and facilitator, on our contracts, on anvil.

The seller is the SDK's FastAPI middleware with its ``BatchSettlementEvmScheme``
server and its ``BatchSettlementEvmFacilitator`` (web3 signer on anvil) against
our contracts at the canonical addresses, so passing proves they answer as the
official facilitator expects. The agent buys many times: one deposit
transaction, one voucher per request; the chain, the agent's books and the
SDK server's channel record agree to the unit. A fake seller built from the
same SDK app but rewriting ``chargedAmount`` upward makes the agent stop
signing and start a withdrawal. Losing the agent's channel records, the agent
finds its channel again on chain (cold start) and resyncs from the seller's
corrective 402. Eight real OS processes (``channel_buyer.py``, forked after
one import) share one SQLite book, one wallet and one task budget and buy
through channels at once: spend never passes the budget and spend plus what
is locked in escrow equals what left the wallet on chain.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from farthing.agents.channels.books import escrow_balance, locked_total
from farthing.agents.channels.reconcile import reconcile_channels
from farthing.agents.channels.store import list_channels
from farthing.agents.outcome import outcome_of
from farthing.agents.settings import AgentSettings
from farthing.agents.tables import agent_channel
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS, ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.wallet.chain import Call, RpcChain
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from tests import zygote
from tests.agents.conftest import World, make_world

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]

PRICE = 1_000
FUNDS = 1_000_000
SETTINGS = AgentSettings(
    approval_poll_s=0.05,
    settle_retry_delay_s=0.05,
    channel_deposit_multiple=20,
    channel_wait_s=5,
)


@pytest.fixture
def anvil_world(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[World]:
    place_channel_contracts(anvil_chain)
    made = make_world(anvil_chain, tmp_path, funds=FUNDS, settings=SETTINGS)
    yield made
    made.close()


def sdk_channel_server(world: World) -> tuple[FastAPI, Any]:
    """The SDK's batch-settlement seller: its middleware, server scheme and facilitator."""
    from x402 import x402Facilitator, x402ResourceServer
    from x402.http.middleware.fastapi import payment_middleware
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
    from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
    from x402.mechanisms.evm.batch_settlement.server import (
        BatchSettlementEvmScheme,
        BatchSettlementEvmSchemeServerConfig,
    )

    assert isinstance(world.chain, RpcChain)
    dev = world.chain.dev_accounts()
    signer = FacilitatorWeb3Signer(
        private_key=dev[4].private_key.get_secret_value(), rpc_url=world.chain.rpc_url
    )
    authorizer = LocalAuthorizerSigner(dev[5].private_key.get_secret_value())
    facilitator = x402Facilitator().register(
        [world.chain.network], BatchSettlementEvmFacilitator(signer, authorizer_signer=authorizer)
    )
    scheme = BatchSettlementEvmScheme(
        world.merchant, BatchSettlementEvmSchemeServerConfig(receiver_authorizer_signer=authorizer)
    )
    server = x402ResourceServer(facilitator)
    server.register(world.chain.network, scheme)
    routes = {
        "GET /articles/*": {
            "accepts": {
                "scheme": "batch-settlement",
                "payTo": world.merchant,
                "price": {
                    "amount": str(PRICE),
                    "asset": world.asset.address,
                    "extra": {"name": world.asset.name, "version": world.asset.version},
                },
                "network": world.chain.network,
            },
            "description": "an article",
        }
    }
    app = FastAPI()
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request: Any, call_next: Any) -> Any:
        return await middleware(request, call_next)

    @app.get("/articles/{slug}")
    async def article(slug: str) -> dict[str, str]:
        return {"article": slug}

    return app, scheme


class OverchargingFake:
    """A fake seller: the SDK app, with PAYMENT-RESPONSE's chargedAmount doubled after the first buy."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def tamper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"payment-response":
                        self.answers += 1
                        data = json.loads(base64.b64decode(value))
                        extra = data.get("extra") or {}
                        if self.answers > 1 and "chargedAmount" in extra:
                            extra["chargedAmount"] = str(2 * PRICE)
                        value = base64.b64encode(json.dumps(data).encode())
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, tamper)


def client(world: World, app: Any, **intent: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        auth=world.payer.auth(task_id="t", purpose="reading", expected_buys=50, **intent),
        transport=httpx.ASGITransport(app=app),
        timeout=30,
    )


def deposits(world: World, channel_id: str) -> list[Any]:
    topic = ESCROW_EVENT_TOPICS["Deposited"]
    return world.chain.logs(
        CANONICAL_CHANNEL_CONTRACTS.settlement, [topic, bytes.fromhex(channel_id[2:])], 0
    )


async def test_many_buys_one_deposit_and_the_books_equal_the_chain(anvil_world: World) -> None:
    world = anvil_world
    app, _scheme = sdk_channel_server(world)
    buys = 7
    async with client(world, app) as http:
        for n in range(buys):
            response = await http.get(f"http://sdk.test/articles/{n}")
            assert response.status_code == 200, response.text
            assert response.json() == {"article": str(n)}
            outcome = outcome_of(response)
            assert outcome is not None and outcome.status == "paid", outcome
    (channel,) = list_channels(world.books)
    deposit = 20 * PRICE
    assert (channel.status, channel.balance, channel.charged) == ("open", deposit, buys * PRICE)
    assert channel.signed_max == buys * PRICE
    assert len(deposits(world, channel.channel_id)) == 1  # one deposit transaction
    escrow = ChannelEscrow(world.chain)
    assert escrow.channel(bytes.fromhex(channel.channel_id[2:])) == (deposit, 0)
    assert world.token.balance_of(world.agent.address) == FUNDS - deposit
    # The books: charges spent against the budget, the rest locked in escrow.
    status = world.books.status()
    assert (status.spent, status.reserved) == (buys * PRICE, 0)
    assert escrow_balance(world.books, channel.channel_id) == deposit - buys * PRICE
    with world.database.read() as session:
        assert locked_total(session, world.books) == deposit - buys * PRICE
    # The token reconciliation matches the deposit's wallet → collector transfer,
    # and the escrow's events match the channel's books.
    assert world.reconcile().breaks == ()
    assert reconcile_channels(world.payer) == []


async def test_a_seller_that_overcharges_stops_the_channel_and_starts_a_withdrawal(
    anvil_world: World,
) -> None:
    world = anvil_world
    app, _scheme = sdk_channel_server(world)
    gas = world.chain.send(
        Call(world.agent.address, b"", value=10**18), sender=world.chain.dev_accounts()[6].signer()
    )
    assert gas.ok
    fake = OverchargingFake(app)
    async with client(world, fake) as http:
        first = await http.get("http://sdk.test/articles/a")
        assert outcome_of(first).status == "paid"  # type: ignore[union-attr]
        second = await http.get("http://sdk.test/articles/b")
        outcome = outcome_of(second)
        assert outcome is not None and outcome.reason == "charge_above_ceiling", outcome
        (channel,) = list_channels(world.books)
        assert channel.status == "withdrawing" and channel.reason == "charge_above_ceiling"
        # The charge is booked at the ceiling: all our voucher lets the seller claim.
        assert world.books.status().spent == 2 * PRICE
        # No voucher is signed on a stopped channel: with one slot, nothing more is paid.
        world.payer.settings = SETTINGS.model_copy(
            update={"channel_slots_max": 1, "channel_wait_s": 0}
        )
        third = await http.get("http://sdk.test/articles/c")
        assert outcome_of(third).reason == "channel_busy"  # type: ignore[union-attr]
    escrow = ChannelEscrow(world.chain)
    amount, at = escrow.pending_withdrawal(bytes.fromhex(channel.channel_id[2:]))
    assert at > 0 and amount == 20 * PRICE


async def test_the_agent_recovers_its_channel_from_the_chain_after_losing_its_records(
    anvil_world: World,
) -> None:
    world = anvil_world
    app, _scheme = sdk_channel_server(world)
    async with client(world, app) as http:
        for n in range(3):
            assert (await http.get(f"http://sdk.test/articles/{n}")).status_code == 200
    (before,) = list_channels(world.books)
    with world.database.write() as session:
        session.execute(delete(agent_channel))
    async with client(world, app) as http:
        response = await http.get("http://sdk.test/articles/after")
        assert response.status_code == 200, (outcome_of(response), response.headers)
        assert outcome_of(response).status == "paid"  # type: ignore[union-attr]
    (after,) = list_channels(world.books)
    assert after.channel_id == before.channel_id  # the same slot, found on chain
    assert after.charged == 4 * PRICE and after.balance == before.balance
    assert len(deposits(world, after.channel_id)) == 1  # no second deposit
    assert world.books.status().spent == 4 * PRICE


async def test_concurrent_buyers_sharing_one_budget_never_overspend(anvil_world: World) -> None:
    # Eight buyers at once on one agent's books (threads here; the lease and
    # the deposit cap are taken under the ledger's write lock either way).
    import anyio

    world = anvil_world
    app, _scheme = sdk_channel_server(world)
    budget = 12 * PRICE
    world.books.start_task("t", budget)
    outcomes: list[Any] = []

    async def buyer(n: int) -> None:
        async with client(world, app) as http:
            for k in range(4):
                response = await http.get(f"http://sdk.test/articles/{n}-{k}")
                outcomes.append(outcome_of(response))

    async with anyio.create_task_group() as group:
        for n in range(8):
            group.start_soon(buyer, n)
    paid = [o for o in outcomes if o is not None and o.status == "paid"]
    status = world.books.status(task_id="t")
    assert status.task_spent == len(paid) * PRICE <= budget
    with world.database.read() as session:
        locked = locked_total(session, world.books)
    assert status.task_spent + locked <= budget
    escrow = ChannelEscrow(world.chain)
    on_chain = sum(
        escrow.channel(bytes.fromhex(c.channel_id[2:]))[0] for c in list_channels(world.books)
    )
    assert on_chain == status.task_spent + locked
    assert reconcile_channels(world.payer) == []


# ------------------------------------------------------------------ eight real processes

BUYER = Path(__file__).with_name("channel_buyer.py")
BUYER_COUNT = 8
BUYS_EACH = 3
RACE_BUDGET = 10 * PRICE  # well under the 24 articles the buyers would buy
RACE_DEPOSIT_MULTIPLE = (
    4  # small deposits, so several channels get funded before the budget runs out
)


def start_buyers(world: World, url: str, barrier: Path) -> subprocess.Popen[str]:
    """One launcher that imports once and forks ``BUYER_COUNT`` buyer processes (its own session)."""
    assert isinstance(world.chain, RpcChain)
    config = {
        "database_url": world.database_url,
        "rpc_url": world.chain.rpc_url,
        "token": world.asset.address,
        "seller_url": url,
        "agent_id": "agent",
        "task_id": "t",
        "buyers": BUYER_COUNT,
        "buys": BUYS_EACH,
        "barrier": str(barrier),
        "wait_s": 60,
        "request_timeout_s": 30,
        "settings": {
            "channel_deposit_multiple": RACE_DEPOSIT_MULTIPLE,
            "channel_wait_s": 3,
            "settle_retry_delay_s": 0.05,
        },
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")},
        "FARTHING_TEST_AGENT_KEY": world.agent.private_key.get_secret_value(),
    }
    return zygote.spawn(
        [sys.executable, str(BUYER), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,  # the buyers share its process group, so teardown can end them all
    )


def test_eight_processes_sharing_one_budget_through_channels_never_overspend(
    anvil_world: World, tmp_path: Path
) -> None:
    # Eight OS processes, one SQLite file of books, one wallet, one task
    # budget: the channel leases and the deposit cap hold across processes
    # only if they are taken under the ledger's write lock, which is what
    # this proves (the threads test above shares one process's objects).
    import time
    from collections import Counter

    from sqlalchemy import func, select

    from farthing.agents.integrity import ledger_balanced
    from farthing.ledger.tables import PendingTransfer, table_of
    from tests.paywall.conftest import serve_in_thread

    world = anvil_world
    world.books.start_task("t", RACE_BUDGET)
    app, _scheme = sdk_channel_server(world)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    launcher: subprocess.Popen[str] | None = None
    with serve_in_thread(app) as url:
        try:
            launcher = start_buyers(world, url, barrier)
            # Generous: on a loaded machine the buyers' imports alone take long.
            deadline = time.monotonic() + 180
            while len(list(barrier.glob("ready-*"))) < BUYER_COUNT:
                assert launcher.poll() is None, launcher.communicate(timeout=5)[1][-2000:]
                assert time.monotonic() < deadline, "the buyers did not get ready in 180 s"
                time.sleep(0.05)
            (barrier / "go").touch()
            # While they race, the task's spend (posted and reserved) never passes its budget.
            most = 0
            deadline = time.monotonic() + 90
            while launcher.poll() is None:
                assert time.monotonic() < deadline, "the buyers did not finish in 90 s"
                most = max(most, world.books.status(task_id="t").task_spent)
                time.sleep(0.1)
            _out, err = launcher.communicate(timeout=10)
            assert launcher.returncode == 0, err[-2000:]
        finally:
            if launcher is not None:
                # The launcher and any buyer still alive (even one whose launcher died).
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait(timeout=10)
                for pipe in (launcher.stdout, launcher.stderr):
                    if pipe is not None:
                        pipe.close()
    outputs = [json.loads(f.read_text()) for f in sorted(barrier.glob("result-*.json"))]
    results = [r for out in outputs for r in out["results"]]
    assert len(results) == BUYER_COUNT * BUYS_EACH
    statuses = Counter((status, reason) for status, reason, _ in results)
    paid = [r for r in results if r[0] == "paid"]
    assert all(reason is None and amount == str(PRICE) for _, reason, amount in paid), statuses
    # Every purchase not paid was refused by a budget or found its channels busy, never charged.
    assert {s for s, _ in statuses} <= {"paid", "not_paid"}, statuses
    assert paid, statuses

    status = world.books.status(task_id="t")
    assert most <= RACE_BUDGET
    assert status.task_spent == len(paid) * PRICE <= RACE_BUDGET
    assert status.reserved == 0 and world.open_reservations() == []
    with world.database.read() as session:
        locked = locked_total(session, world.books)
        open_pending = session.execute(
            select(func.count()).select_from(table_of(PendingTransfer))
        ).scalar_one()
    assert open_pending == 0  # no charge or deposit left reserved
    # What left the wallet on chain is exactly spend plus what is still locked in escrow.
    left_wallet = FUNDS - world.token.balance_of(world.agent.address)
    escrow = ChannelEscrow(world.chain)
    channels = list_channels(world.books)
    on_chain = [escrow.channel(bytes.fromhex(c.channel_id[2:])) for c in channels]
    assert left_wallet == sum(balance for balance, _ in on_chain) == status.task_spent + locked
    assert sum(escrow_balance(world.books, c.channel_id) for c in channels) == locked
    for c, (balance, _claimed) in zip(channels, on_chain, strict=True):
        assert c.balance == balance and c.charged <= balance and c.lease_owner is None
    assert sum(c.charged for c in channels) == status.task_spent
    assert ledger_balanced(world.database)
    assert world.reconcile().breaks == ()
    assert reconcile_channels(world.payer) == []
