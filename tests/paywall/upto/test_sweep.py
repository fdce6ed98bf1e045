"""The sweep books an ``upto`` payment at its charge, never its ceiling, and resolves an open one from Permit2, not EIP-3009.

``PaywallMiddleware`` over a small app whose handler charges less than the
ceiling, a real ``LocalFacilitator``, SQLite payment files and the ledger's
revenue books, on the memory chain and anvil, through
``httpx.ASGITransport``. A settled row whose booking the middleware left
undone is booked by the sweep at the charge; an open row whose permit was
never used is expired once past its deadline (and kept open inside it); a
permit whose nonce its payer spent itself is failed, nothing booked. On
anvil with automine off, a settlement whose receipt timed out is resolved
by the sweep from the transaction's receipt once mined: settled at the
charge, booked once, and the payer's retry gets the content without paying
again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
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
from farthing.paywall.schemes.calldata import arg_types, encode_call
from farthing.paywall.schemes.upto.client import payment_header, upto_payment
from farthing.paywall.schemes.upto.contract import PERMIT2_ADDRESS
from farthing.paywall.schemes.upto.wire import parse_requirements
from farthing.wallet.chain import Call, RpcChain
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv

USED = 1_234


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
    env: UptoEnv, store: PaymentStore, facilitator: LocalFacilitator, books: Any = None
) -> PaywallMiddleware:
    return PaywallMiddleware(
        Starlette(routes=[Route("/chat", _metered)]),
        options=PaywallOptions(
            routes=[PaidRoute("/chat", CEILING, schemes=("upto",))],
            facilitator=facilitator,
            store=store,
            books=books,
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


def _header(env: UptoEnv, app: Any) -> str:
    challenge = json.loads(base64.b64decode(_get(app).headers["PAYMENT-REQUIRED"]))
    (entry,) = [a for a in challenge["accepts"] if a["scheme"] == "upto"]
    offer = parse_requirements(entry)
    assert not hasattr(offer, "reason")
    return payment_header(upto_payment(offer, env.payer, now=env.chain.timestamp()))  # type: ignore[arg-type]


def _revenue(ledger: LedgerDatabase, env: UptoEnv) -> list[tuple[int, int]]:
    with ledger.read() as session:
        rows = revenue_report(session=session, payee_address=env.payee.address)
    return [(r.posted, r.payment_count) for r in rows]


def _open_row(env: UptoEnv, store: PaymentStore, nonce: int, deadline: int) -> PaymentKey:
    """An ``upto`` row left pending by a seller that never learnt its settlement's outcome."""
    key = PaymentKey(env.chain.network, env.asset.address, env.payer.address, f"0x{nonce:064x}")
    record = PaymentRecord(
        key=key,
        state=PaymentState.CLAIMED,
        owner="",
        pay_to=env.payee.address,
        amount=CEILING,
        route="/chat",
        resource="http://site.test/chat",
        valid_after=0,
        valid_before=deadline,
        scheme="upto",
    )
    claim = store.claim(record)
    assert claim.won
    assert store.mark_pending(key, claim.owner, reason="settlement_unknown", tx_hash=None)
    return key


def test_a_settled_row_left_unbooked_is_booked_at_its_charge(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    facilitator = LocalFacilitator(env.chain, env.relayer)
    app = _site(env, store, facilitator)  # no books: the middleware's booking "failed"
    response = _get(app, _header(env, app))
    assert response.status_code == 200 and env.balance(env.payee) == USED
    (row,) = store.unbooked()
    assert (row.scheme, row.amount, row.settled_amount, row.charge) == (
        "upto", CEILING, USED, USED,
    )  # fmt: skip
    books = LedgerRevenueBook(ledger)
    assert sweep(store, facilitator, books).booked == 1
    assert _revenue(ledger, env) == [(USED, 1)]  # the charge, not the 5 USDC ceiling
    assert sweep(store, facilitator, books).booked == 0 and store.unbooked() == []
    assert _revenue(ledger, env) == [(USED, 1)]


def test_an_unused_permit_is_expired_past_its_deadline_only(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    facilitator = LocalFacilitator(env.chain, env.relayer)
    deadline = env.chain.timestamp() + 300
    key = _open_row(env, store, secrets.randbits(256), deadline)
    inside = sweep(store, facilitator, LedgerRevenueBook(ledger), clock=lambda: deadline - 1)
    assert inside.still_pending == 1 and inside.expired == 0
    after = sweep(store, facilitator, LedgerRevenueBook(ledger), clock=lambda: deadline + 1)
    assert after.expired == 1
    record = store.get(key)
    assert record is not None and record.state == PaymentState.EXPIRED
    assert _revenue(ledger, env) == [] and env.balance(env.payer) == FUNDS


def test_a_permit_its_payer_spent_itself_is_failed_not_booked(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    """Permit2's bitmap says used, the proxy's logs show no settlement to the payee: failed."""
    env = upto_env
    nonce = secrets.randbits(256)
    key = _open_row(env, store, nonce, env.chain.timestamp() + 300)
    cancel = "invalidateUnorderedNonces(uint256,uint256)"
    data = encode_call(cancel, arg_types(cancel), [nonce >> 8, 1 << (nonce & 0xFF)])
    assert env.chain.send(Call(PERMIT2_ADDRESS, data), sender=env.payer).ok
    report = sweep(store, LocalFacilitator(env.chain, env.relayer), LedgerRevenueBook(ledger))
    assert report.failed == 1 and report.booked == 0
    record = store.get(key)
    assert record is not None and record.state == PaymentState.FAILED
    assert record.reason == "permit2_nonce_used_elsewhere"
    assert _revenue(ledger, env) == []


@pytest.mark.parametrize("chain", [pytest.param("anvil", marks=pytest.mark.anvil)], indirect=True)
def test_a_receipt_timeout_is_resolved_by_the_sweep_at_the_charge(
    upto_env: UptoEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = upto_env
    assert isinstance(env.chain, RpcChain) and env.chain.rpc_url
    slow = RpcChain(env.chain.rpc_url, timeout_s=5.0, receipt_timeout_s=0.5)
    facilitator = LocalFacilitator(slow, env.relayer)
    books = LedgerRevenueBook(ledger)
    app = _site(env, store, facilitator, books)
    header = _header(env, app)
    provider: Any = env.chain.w3.provider
    provider.make_request("evm_setAutomine", [False])
    try:
        first = _get(app, header)
        assert first.status_code == 503 and first.json()["error"] == "settlement_pending"
        assert "tokens" not in first.text
        (row,) = store.records()
        assert row.state == PaymentState.PENDING and row.tx_hash
        # Not mined yet: the permit is unused on chain, its settlement is in the pool.
        assert sweep(store, facilitator, books).still_pending == 1
        provider.make_request("evm_mine", [])
    finally:
        provider.make_request("evm_setAutomine", [True])
    report = sweep(store, facilitator, books)
    assert (report.settled, report.booked) == (1, 1)
    record = store.get(row.key)
    assert record is not None and record.state == PaymentState.SETTLED
    assert (record.settled_amount, record.tx_hash, record.booked) == (USED, row.tx_hash, True)
    assert _revenue(ledger, env) == [(USED, 1)]
    assert env.balance(env.payee) == USED and env.balance(env.payer) == FUNDS - USED
    retry = _get(app, header)  # the payer's retry collects what it paid for
    assert retry.status_code == 200 and retry.json() == {"tokens": 42}
    settlement = json.loads(base64.b64decode(retry.headers["PAYMENT-RESPONSE"]))
    assert (settlement["success"], settlement["amount"]) == (True, str(USED))
    assert env.balance(env.payer) == FUNDS - USED and _revenue(ledger, env) == [(USED, 1)]
    again = _get(app, header)
    assert again.status_code == 402 and "tokens" not in again.text
    assert sweep(store, facilitator, books) == type(report)()
    slow.close()
