"""Behind a remote facilitator, a retry of an ``upto`` payment whose seller died is served when nothing moved, never charged twice.

The paywall asks our facilitator's HTTP app (uvicorn on 127.0.0.1, bearer
token) through ``RemoteFacilitator``; it cannot read the chain itself. On the
memory chain and anvil, a claim whose owner died before settling (its lease
run out, no transaction named) is put to the facilitator's verify by the
payer's retry: the permit is still good, so the retry is served and settled
once, and booked once. When the facilitator did settle the permit before the
owner died (its journal and Permit2 say so), the retry is told the payment
is pending (503) and nothing moves again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import (
    LocalFacilitator,
    PaidRoute,
    PaymentStore,
    PaywallMiddleware,
    PaywallOptions,
    RemoteFacilitator,
)
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.upto.client import payment_header, upto_payment
from farthing.paywall.schemes.upto.wire import UptoRequirements, parse_requirements
from farthing.paywall.wire import unb64_json
from tests.paywall.conftest import serve_in_thread
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv
from tests.paywall.upto.test_resume import _claim_as_dead_owner

USED = 4_000
TOKEN = "a-facilitator-key-for-the-site"


async def _metered(request: Request) -> Response:
    return JSONResponse({"tokens": 42}, headers={"Farthing-Charge": str(USED)})


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerDatabase]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield database
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PaymentStore]:
    payments = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    yield payments
    payments.dispose()


@pytest.fixture
def remote(upto_env: UptoEnv) -> Iterator[tuple[str, LocalFacilitator]]:
    local = LocalFacilitator(upto_env.chain, upto_env.relayer)
    with serve_in_thread(facilitator_app(local, token=TOKEN)) as url:
        yield url, local


class Site:
    """The paywalled site asking the remote facilitator, in one event loop (its client's)."""

    def __init__(self, env: UptoEnv, store: PaymentStore, url: str, ledger: LedgerDatabase) -> None:
        self.remote = RemoteFacilitator(url, token=TOKEN)
        self.app = PaywallMiddleware(
            Starlette(routes=[Route("/chat", _metered)]),
            options=PaywallOptions(
                routes=[PaidRoute("/chat", CEILING, schemes=("upto",))],
                facilitator=self.remote,
                store=store,
                books=LedgerRevenueBook(ledger),
                pay_to=env.payee.address,
                asset=env.asset,
                upto_facilitator=env.relayer.address,
            ),
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://site.test"
        )

    async def get(self, header: str | None = None) -> httpx.Response:
        headers = {"PAYMENT-SIGNATURE": header} if header else {}
        return await self.client.get("/chat", headers=headers)

    async def offer(self) -> UptoRequirements:
        challenge = unb64_json((await self.get()).headers["PAYMENT-REQUIRED"])
        (entry,) = [a for a in challenge["accepts"] if a["scheme"] == "upto"]
        offer = parse_requirements(entry)
        assert isinstance(offer, UptoRequirements)
        return offer

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.remote.aclose()


def _revenue(ledger: LedgerDatabase, env: UptoEnv) -> list[tuple[int, int]]:
    with ledger.read() as session:
        rows = revenue_report(session=session, payee_address=env.payee.address)
    return [(r.posted, r.payment_count) for r in rows]


def test_a_dead_owners_unsettled_permit_is_served_and_settled_once(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase, remote: tuple[str, Any]
) -> None:
    env = upto_env

    async def go() -> tuple[httpx.Response, httpx.Response]:
        site = Site(env, store, remote[0], ledger)
        try:
            payment = upto_payment(await site.offer(), env.payer, now=env.chain.timestamp())
            _claim_as_dead_owner(env, store, payment)
            first = await site.get(payment_header(payment))
            return first, await site.get(payment_header(payment))
        finally:
            await site.aclose()

    response, again = asyncio.run(go())
    assert response.status_code == 200, response.text
    assert response.json() == {"tokens": 42}
    assert unb64_json(response.headers["PAYMENT-RESPONSE"])["amount"] == str(USED)
    assert env.balance(env.payer) == FUNDS - USED and env.balance(env.payee) == USED
    assert _revenue(ledger, env) == [(USED, 1)]
    assert again.status_code == 402 and "tokens" not in again.text
    assert env.balance(env.payer) == FUNDS - USED


def test_a_permit_the_facilitator_settled_before_the_owner_died_is_not_charged_again(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase, remote: tuple[str, Any]
) -> None:
    env = upto_env

    async def go() -> httpx.Response:
        site = Site(env, store, remote[0], ledger)
        try:
            offer = await site.offer()
            payment = upto_payment(offer, env.payer, now=env.chain.timestamp())
            _claim_as_dead_owner(env, store, payment)
            # The dead owner's settlement went through the facilitator; its row never heard.
            settled = remote[1].upto.settle(payment, offer.charging(USED))
            assert settled.success
            return await site.get(payment_header(payment))
        finally:
            await site.aclose()

    response = asyncio.run(go())
    assert response.status_code == 503 and response.json()["error"] == "settlement_pending"
    assert "tokens" not in response.text
    assert env.balance(env.payer) == FUNDS - USED  # moved once, by the dead owner's settlement
