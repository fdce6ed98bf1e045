"""A payer's retry of an ``upto`` payment left open gets the content, decided by the chain, and never pays twice.

``PaywallMiddleware`` over a small app charging less than the ceiling, a
real ``LocalFacilitator``, a SQLite payment file and the ledger's revenue
books, through ``httpx.ASGITransport``. On anvil with automine off, a
settlement whose receipt timed out answers 503; the retry while it is still
in the pool answers 503 again and sends nothing; once mined, the retry gets
the content with the charge's ``PAYMENT-RESPONSE``, booked once. On the
memory chain and anvil, a claim whose owner died (its lease run out) is
taken over by the retry: served and settled afresh when its permit is
unused, or, when the dead owner's settlement had gone through (it died
between settling and recording), delivered at what that settlement moved,
without a second one; and when that settlement is still in the node's pool
as the retry settles afresh (anvil, automine off), Permit2 lets one of the
two move money and the retry delivers the dead owner's, at its charge.
A retry whose signature is not the payer's gets a 402
and takes nothing over. A streamed answer whose settlement stayed pending
went out already: its retry gets a 402, never the stream again, and the
sweep settles it at the charge.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
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
from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.facilitator.resolve import sweep
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.records.payments import PaymentKey, PaymentRecord, PaymentState
from farthing.paywall.schemes.metering import METER_ASKED, METER_EXTENSION, meter_of
from farthing.paywall.schemes.upto.client import payment_header, upto_payment
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements, parse_requirements
from farthing.wallet.chain import RpcChain
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv

USED = 1_234
LEASE_S = 0.3


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


def _site(
    env: UptoEnv, store: PaymentStore, facilitator: LocalFacilitator, ledger: LedgerDatabase
) -> PaywallMiddleware:
    return PaywallMiddleware(
        Starlette(routes=[Route("/chat", _metered)]),
        options=PaywallOptions(
            routes=[PaidRoute("/chat", CEILING, schemes=("upto",))],
            facilitator=facilitator,
            store=store,
            books=LedgerRevenueBook(ledger),
            pay_to=env.payee.address,
            asset=env.asset,
        ),
    )


def _get(app: Any, header: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
            headers = {"PAYMENT-SIGNATURE": header} if header else {}
            return await client.get("/chat", headers=headers)

    return asyncio.run(go())


def _payment(env: UptoEnv, app: Any) -> tuple[UptoRequirements, UptoPayment]:
    challenge = json.loads(base64.b64decode(_get(app).headers["PAYMENT-REQUIRED"]))
    (entry,) = [a for a in challenge["accepts"] if a["scheme"] == "upto"]
    offer = parse_requirements(entry)
    assert isinstance(offer, UptoRequirements)
    return offer, upto_payment(offer, env.payer, now=env.chain.timestamp())


def _revenue(ledger: LedgerDatabase, env: UptoEnv) -> list[tuple[int, int]]:
    with ledger.read() as session:
        rows = revenue_report(session=session, payee_address=env.payee.address)
    return [(r.posted, r.payment_count) for r in rows]


def _settlement(response: httpx.Response) -> dict[str, Any]:
    return json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))


def _claim_as_dead_owner(env: UptoEnv, store: PaymentStore, payment: UptoPayment) -> PaymentKey:
    """The row a seller claimed just before it was killed: its lease runs out unrenewed."""
    auth = payment.authorization
    key = PaymentKey(
        env.chain.network, env.asset.address, auth.from_address, f"0x{auth.nonce:064x}"
    )
    record = PaymentRecord(
        key=key,
        state=PaymentState.CLAIMED,
        owner="",
        pay_to=auth.to,
        amount=auth.amount,
        route="/chat",
        resource="http://site.test/chat",
        valid_after=auth.valid_after,
        valid_before=auth.deadline,
        scheme="upto",
    )
    assert store.claim(record, lease_s=LEASE_S).won
    time.sleep(LEASE_S + 0.1)
    return key


@pytest.mark.parametrize("chain", [pytest.param("anvil", marks=pytest.mark.anvil)], indirect=True)
def test_the_retry_after_a_receipt_timeout_gets_the_content_paid_once(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    assert isinstance(env.chain, RpcChain) and env.chain.rpc_url
    slow = RpcChain(env.chain.rpc_url, timeout_s=5.0, receipt_timeout_s=0.5)
    app = _site(env, store, LocalFacilitator(slow, env.relayer), ledger)
    _, payment = _payment(env, app)
    header = payment_header(payment)
    provider: Any = env.chain.w3.provider
    provider.make_request("evm_setAutomine", [False])
    try:
        first = _get(app, header)
        assert first.status_code == 503 and "tokens" not in first.text
        in_pool = _get(app, header)  # still in the pool: nothing decided, nothing sent again
        assert in_pool.status_code == 503 and in_pool.json()["error"] == "settlement_pending"
        pool: Any = provider.make_request("txpool_content", [])
        pending = pool["result"]["pending"]
        assert sum(len(by_nonce) for by_nonce in pending.values()) == 1
        provider.make_request("evm_mine", [])
    finally:
        provider.make_request("evm_setAutomine", [True])
    retry = _get(app, header)
    assert retry.status_code == 200 and retry.json() == {"tokens": 42}
    assert (_settlement(retry)["success"], _settlement(retry)["amount"]) == (True, str(USED))
    assert env.balance(env.payer) == FUNDS - USED and env.balance(env.payee) == USED
    (row,) = store.records()
    assert (row.state, row.settled_amount, row.booked, row.delivered) == (
        PaymentState.SETTLED, USED, True, True,
    )  # fmt: skip
    assert _revenue(ledger, env) == [(USED, 1)]
    again = _get(app, header)
    assert again.status_code == 402 and "tokens" not in again.text
    assert env.balance(env.payer) == FUNDS - USED
    slow.close()


def test_an_orphaned_claim_with_an_unused_permit_is_served_and_settled_once(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    app = _site(env, store, LocalFacilitator(env.chain, env.relayer), ledger)
    _, payment = _payment(env, app)
    _claim_as_dead_owner(env, store, payment)
    response = _get(app, payment_header(payment))
    assert response.status_code == 200 and response.json() == {"tokens": 42}
    assert _settlement(response)["amount"] == str(USED)
    assert env.balance(env.payer) == FUNDS - USED and _revenue(ledger, env) == [(USED, 1)]


def test_a_settlement_the_dead_owner_never_recorded_is_delivered_not_repeated(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    """Killed between settling and recording: the chain (proxy logs) names the charge it moved."""
    env = upto_env
    facilitator = LocalFacilitator(env.chain, env.relayer)
    app = _site(env, store, facilitator, ledger)
    offer, payment = _payment(env, app)
    key = _claim_as_dead_owner(env, store, payment)
    dead_charge = 777
    assert env.facilitator.settle(payment, offer.charging(dead_charge)).success
    response = _get(app, payment_header(payment))
    assert response.status_code == 200 and response.json() == {"tokens": 42}
    assert _settlement(response)["amount"] == str(dead_charge)  # what moved, not the handler's
    assert env.balance(env.payer) == FUNDS - dead_charge
    record = store.get(key)
    assert record is not None and record.state == PaymentState.SETTLED
    assert (record.settled_amount, record.booked, record.delivered) == (dead_charge, True, True)
    assert _revenue(ledger, env) == [(dead_charge, 1)]
    assert _get(app, payment_header(payment)).status_code == 402


def test_a_retry_not_signed_by_the_payer_takes_nothing_over(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    app = _site(env, store, LocalFacilitator(env.chain, env.relayer), ledger)
    _, payment = _payment(env, app)
    key = _claim_as_dead_owner(env, store, payment)
    wire = json.loads(base64.b64decode(payment_header(payment)))
    signature = wire["payload"]["signature"]
    wire["payload"]["signature"] = (
        signature[:10] + ("0" if signature[10] != "0" else "1") + (signature[11:])
    )
    forged = base64.b64encode(json.dumps(wire).encode()).decode()
    response = _get(app, forged)
    assert response.status_code == 402 and "tokens" not in response.text
    assert response.json()["error"] == "invalid_signature"
    record = store.get(key)
    assert record is not None and record.state == PaymentState.CLAIMED  # not taken over
    assert env.balance(env.payer) == FUNDS


async def _streamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A metered stream: tokens first, then the charge settled, its receipt in the last event."""
    meter = meter_of(scope)
    assert meter is not None
    start = {"type": "http.response.start", "status": 200, "headers": []}
    await send(start)
    await send({"type": "http.response.body", "body": b"data: tokens\n\n", "more_body": True})
    receipt = await meter.finish(USED)
    last = b"data: " + json.dumps(receipt.settlement).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": last, "more_body": False})


def _asking_for_a_meter(app: Any) -> Any:
    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions = {**(scope.get("extensions") or {}), METER_EXTENSION: METER_ASKED}
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)

    return outer


@pytest.mark.parametrize("chain", [pytest.param("anvil", marks=pytest.mark.anvil)], indirect=True)
def test_a_pending_stream_is_never_streamed_again_and_the_sweep_settles_it(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    assert isinstance(env.chain, RpcChain) and env.chain.rpc_url
    slow = RpcChain(env.chain.rpc_url, timeout_s=5.0, receipt_timeout_s=0.5)
    facilitator = LocalFacilitator(slow, env.relayer)
    books = LedgerRevenueBook(ledger)
    paywall = PaywallMiddleware(
        _streamed,
        options=PaywallOptions(
            routes=[PaidRoute("/chat", CEILING, schemes=("upto",))],
            facilitator=facilitator,
            store=store,
            books=books,
            pay_to=env.payee.address,
            asset=env.asset,
        ),
    )
    app = _asking_for_a_meter(paywall)
    _, payment = _payment(env, app)
    header = payment_header(payment)
    provider: Any = env.chain.w3.provider
    provider.make_request("evm_setAutomine", [False])
    try:
        first = _get(app, header)
        assert first.status_code == 200 and "tokens" in first.text
        assert "settlement_pending" in first.text
        (row,) = store.records()
        assert row.state == PaymentState.PENDING and row.delivered
        retry = _get(app, header)
        assert retry.status_code == 402 and "tokens" not in retry.text
        provider.make_request("evm_mine", [])
    finally:
        provider.make_request("evm_setAutomine", [True])
    assert _get(app, header).status_code == 402
    report = sweep(store, facilitator, books)
    assert (report.settled, report.booked) == (1, 1)
    assert env.balance(env.payer) == FUNDS - USED and _revenue(ledger, env) == [(USED, 1)]
    assert _get(app, header).status_code == 402
    slow.close()


@pytest.mark.parametrize("chain", [pytest.param("anvil", marks=pytest.mark.anvil)], indirect=True)
def test_a_retry_racing_the_dead_owners_pooled_settlement_moves_money_once(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    assert isinstance(env.chain, RpcChain) and env.chain.rpc_url
    app = _site(env, store, LocalFacilitator(env.chain, env.relayer), ledger)
    offer, payment = _payment(env, app)
    header = payment_header(payment)
    key = _claim_as_dead_owner(env, store, payment)
    dead_chain = RpcChain(env.chain.rpc_url, timeout_s=5.0, receipt_timeout_s=0.5)
    dead_charge = 777
    provider: Any = env.chain.w3.provider
    provider.make_request("evm_setAutomine", [False])
    try:
        # The dead owner's settlement is in the pool, not recorded in its row.
        dead = UptoFacilitator(dead_chain, env.relayer).settle(payment, offer.charging(dead_charge))
        assert dead.pending and dead.transaction
        # Mine while the retry's own settlement waits for its receipt.
        miner = threading.Timer(2.0, lambda: provider.make_request("evm_mine", []))
        miner.start()
        response = _get(app, header)
        miner.join()
    finally:
        provider.make_request("evm_setAutomine", [True])
        dead_chain.close()
    if response.status_code == 503:  # the retry saw the pool first: nothing sent, retry
        assert response.json()["error"] == "settlement_pending"
        response = _get(app, header)
    assert response.status_code == 200 and response.json() == {"tokens": 42}, response.text
    assert _settlement(response)["amount"] == str(dead_charge)
    assert env.balance(env.payer) == FUNDS - dead_charge
    record = store.get(key)
    assert record is not None and (record.settled_amount, record.booked, record.delivered) == (
        dead_charge, True, True,
    )  # fmt: skip
    assert _revenue(ledger, env) == [(dead_charge, 1)]
