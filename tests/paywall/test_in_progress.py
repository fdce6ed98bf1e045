"""A copy of a payment that a live request is still settling is told to retry (503), never that it was spent.

The first request's handler is held on an event, so its claim is live while
copies of the same PAYMENT-SIGNATURE arrive. Each copy gets 503
``payment_in_progress`` with a ``Retry-After`` inside the claim lease (a 402
``nonce_already_used`` here would let a paying client book the payment as
spent without its content). Once the first request has delivered, a copy gets
the 402. Real anvil, token, facilitator and SQLite store, through
``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from tests.paywall.conftest import PRICE, PRICE_ATOMIC, ChainEnv, challenge_of, sign_for

pytestmark = pytest.mark.anvil


def test_a_copy_during_settlement_is_told_to_retry_and_is_never_charged_twice(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return JSONResponse({"secret": "paid-data"})

    lease_s = 30.0
    app = PaywallMiddleware(
        Starlette(routes=[Route("/slow", slow)]),
        options=PaywallOptions(
            routes=[PaidRoute("/slow", PRICE)],
            facilitator=chain_env.facilitator(),
            store=store,
            pay_to=chain_env.merchant,
            asset=chain_env.asset,
            claim_lease_s=lease_s,
        ),
    )
    payer = chain_env.new_payer()
    before = chain_env.token.balance_of(payer.address)

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            header = sign_for(challenge_of(await c.get("/slow"))["accepts"][0], payer)
            first = asyncio.create_task(c.get("/slow", headers={"PAYMENT-SIGNATURE": header}))
            await asyncio.wait_for(entered.wait(), 30)
            copy = await c.get("/slow", headers={"PAYMENT-SIGNATURE": header})
            release.set()
            done = await first
            late = await c.get("/slow", headers={"PAYMENT-SIGNATURE": header})
            return done, copy, late

    done, copy, late = asyncio.run(go())
    assert copy.status_code == 503 and copy.json()["error"] == "payment_in_progress"
    assert 1 <= int(copy.headers["retry-after"]) <= lease_s
    assert "paid-data" not in copy.text
    assert done.status_code == 200 and done.json()["secret"] == "paid-data"
    assert late.status_code == 402 and late.json()["error"] == "nonce_already_used"
    assert chain_env.token.balance_of(payer.address) == before - PRICE_ATOMIC


@pytest.fixture
def store(tmp_path) -> PaymentStore:  # type: ignore[no-untyped-def]
    return PaymentStore.sqlite(tmp_path / "payments.sqlite")
