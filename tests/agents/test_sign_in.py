"""An agent that bought an article reads it again by signing in, never by paying twice.

The real paywalled blog (with receipts, so it offers x402 sign-in-with-x) runs
in process over httpx.ASGITransport on the memory chain; the agent's books are
a real SQLite ledger. After one purchase, a fresh Payer and client of the same
wallet, over the same books, read the article with no new payment, no new
reservation and no move on the chain. A seller that does not know the wallet
(another paywall database) is paid as usual after the sign-in is refused, and
a wallet whose books own nothing never signs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.agents.blog import ARTICLES, CNY_RATE, PREVIEW_FRACTION, PRICE, blog_site
from farthing.agents.books import AgentBooks
from farthing.agents.client import async_paying_client
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Payer
from farthing.agents.reservations import booked_payments
from farthing.agents.settings import AgentSettings
from farthing.agents.sign_in import owned, sign_in_header
from farthing.paywall import (
    LocalFacilitator,
    PaidRoute,
    PaymentState,
    PaymentStore,
    PaywallMiddleware,
    PaywallOptions,
)
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.sign_in import SIGN_IN_WITH_X
from farthing.paywall.wire import b64_json
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World

URL = f"{BLOG}/posts/quarter-penny"


def _paywall(world: World, store: PaymentStore) -> PaywallMiddleware:
    return PaywallMiddleware(
        blog_site(ARTICLES),
        options=PaywallOptions(
            routes=[PaidRoute("/posts/*", PRICE, mime_type="text/html",
                              preview_fraction=PREVIEW_FRACTION)],
            facilitator=LocalFacilitator(world.chain, world.relayer),
            store=store,
            pay_to=world.merchant,
            asset=world.asset,
            rates={"CNY": CNY_RATE},
            receipts=Receipts.ephemeral(),
            public_url=BLOG,  # sign-in names the configured origin
        ),
    )  # fmt: skip


def _fresh_payer(world: World) -> Payer:
    """Another process's view of the same wallet: new books object over the same database."""
    books = AgentBooks(world.database, agent_id="agent", asset=world.asset).ensure()
    return Payer(
        signer=world.agent, chain=world.chain, asset=world.asset, books=books,
        settings=AgentSettings(settle_retry_delay_s=0.05),
    )  # fmt: skip


def _challenge(network: str, info: dict[str, str]) -> httpx.Response:
    declared = {
        "info": {"version": "1", "nonce": "0" * 32, "issuedAt": "2026-01-01T00:00:00Z", **info},
        "supportedChains": [{"chainId": network, "type": "eip191"}],
    }
    body = {"x402Version": 2, "accepts": [], "extensions": {SIGN_IN_WITH_X: declared}}
    return httpx.Response(402, headers={"payment-required": b64_json(body)})


async def _get(payer: Payer, app: Any, url: str = URL) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with async_paying_client(payer, task_id="task-1", transport=transport) as http:
        return await http.get(url)


@pytest.mark.anyio
async def test_a_fresh_client_of_the_same_wallet_signs_in_instead_of_paying(
    world: World, tmp_path: Path
) -> None:
    store = PaymentStore.sqlite(tmp_path / "siwx-paywall.sqlite")
    app = _paywall(world, store)
    before = world.token.balance_of(world.agent.address)

    bought = await _get(world.payer, app)
    assert bought.status_code == 200 and "960 of them a pound" in bought.text
    assert outcome_of(bought).status == "paid"  # type: ignore[union-attr]
    assert world.token.balance_of(world.agent.address) == before - PRICE_ATOMIC

    again = await _get(_fresh_payer(world), app)
    assert again.status_code == 200 and "960 of them a pound" in again.text
    outcome = outcome_of(again)
    assert outcome is not None and (outcome.status, outcome.reason) == ("free", "already_owned")
    assert "payment-response" not in again.headers  # nothing was paid this time
    assert world.token.balance_of(world.agent.address) == before - PRICE_ATOMIC
    assert [p.state for p in booked_payments(world.books)] == ["posted"]  # no new reservation
    assert len(store.records(state=PaymentState.SETTLED)) == 1
    store.dispose()

    # Owned, but a challenge from another origin is never signed.
    foreign = _challenge(
        world.asset.network, {"domain": "evil.test", "uri": "http://evil.test/posts/quarter-penny"}
    )
    assert owned(world.books, URL)
    assert sign_in_header(world.agent, world.books, world.asset.network, URL, foreign) is None


@pytest.mark.anyio
async def test_a_seller_that_does_not_know_the_wallet_is_paid_after_the_sign_in(
    world: World, tmp_path: Path
) -> None:
    first = PaymentStore.sqlite(tmp_path / "first.sqlite")
    assert (await _get(world.payer, _paywall(world, first))).status_code == 200
    forgetful = PaymentStore.sqlite(tmp_path / "forgetful.sqlite")
    paid = await _get(_fresh_payer(world), _paywall(world, forgetful))
    assert paid.status_code == 200
    assert outcome_of(paid).status == "paid"  # type: ignore[union-attr]
    assert [p.state for p in booked_payments(world.books)] == ["posted", "posted"]
    first.dispose()
    forgetful.dispose()


@pytest.mark.anyio
async def test_books_that_own_nothing_never_sign_in(world: World, tmp_path: Path) -> None:
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_paywall(world, store))) as raw:
        challenge = await raw.get(URL)
    assert challenge.status_code == 402 and not owned(world.books, URL)
    header = sign_in_header(world.agent, world.books, world.asset.network, URL, challenge)
    assert header is None
    store.dispose()
