"""Revenue is booked once per payment in the ledger, and the sweep settles the books on what the chain says.

Real ledger (SQLite, migrated), real anvil. Booking the same settlement twice
answers ``exists``; the ledger's own audit verification passes. The sweep
(``farthing.paywall.facilitator.resolve.sweep``) finds a pending payment's transaction
through the token's ``AuthorizationUsed`` log, expires one whose window
passed unused, keeps a still-valid one pending, and books what was unbooked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database, verify
from farthing.paywall import (
    LedgerRevenueBook,
    PaymentKey,
    PaymentRecord,
    PaymentState,
    PaymentStore,
    SettledPayment,
    revenue_transfer_id,
)
from farthing.paywall.facilitator.resolve import sweep
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_authorization
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    paywalled,
    run,
    sign_for,
)

pytestmark = pytest.mark.anvil


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerDatabase]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield database
    database.dispose()


def _settled(env: ChainEnv, nonce: str) -> SettledPayment:
    return SettledPayment(
        network=env.chain.network,
        token=env.asset.address,
        decimals=6,
        symbol="USDC",
        payer="0x" + "11" * 20,
        pay_to=env.merchant,
        nonce=nonce,
        amount=PRICE_ATOMIC,
        tx_hash="0x" + "ee" * 32,
        block_number=3,
        route="/api/**",
        resource="http://shop/api/x",
        valid_after=0,
        valid_before=2**40,
    )


def test_a_settlement_is_booked_once(chain_env: ChainEnv, ledger: LedgerDatabase) -> None:
    books = LedgerRevenueBook(ledger)
    payment = _settled(chain_env, "0x" + "42" * 32)
    first = books.record_settlement(payment)
    second = books.record_settlement(payment)
    assert (first.booked, first.reason) == (True, "ok")
    assert (second.booked, second.reason) == (True, "exists")
    assert first.transfer_id == revenue_transfer_id(
        payment.network, payment.token.lower(), payment.payer, payment.nonce
    )
    with ledger.read() as session:
        (row,) = revenue_report(session=session, payee_address=chain_env.merchant)
        assert (row.posted, row.payment_count) == (PRICE_ATOMIC, 1)
        assert verify(session=session).ok


def test_the_sweep_resolves_pending_payments_from_the_chain(
    chain_env: ChainEnv, store: PaymentStore, ledger: LedgerDatabase
) -> None:
    env = chain_env
    # 1. A payment settled through the paywall but never booked (no books then).
    app = paywalled(env, store)

    async def pay() -> None:
        async with asgi_client(app) as client:
            accepts = challenge_of(await client.get("/api/data"))["accepts"][0]
            header = sign_for(accepts, env.new_payer())
            assert (
                await client.get("/api/data", headers={"PAYMENT-SIGNATURE": header})
            ).status_code == 200

    run(pay())
    # 2. A pending payment whose transaction landed, but whose hash was lost.
    landed_payer = env.new_payer()
    landed = sign_authorization(
        landed_payer,
        build_authorization(from_address=landed_payer.address, to=env.merchant, value=PRICE_ATOMIC),
        TokenDomain.for_asset(env.asset),
    )
    assert env.token.transfer_with_authorization(landed, sender=env.relayer).ok
    # 3. A pending payment never sent, whose window has closed; 4. one still open.
    now = int(time.time())
    for payer, nonce, valid_before in (
        (landed_payer.address, landed.authorization.nonce, landed.authorization.valid_before),
        (env.new_payer(0).address, bytes(32), now - 5),
        (env.new_payer(0).address, b"\x01" * 32, now + 600),
    ):
        record = PaymentRecord(
            key=PaymentKey(env.chain.network, env.asset.address, payer, "0x" + nonce.hex()),
            state=PaymentState.CLAIMED,
            owner="",
            pay_to=env.merchant,
            amount=PRICE_ATOMIC,
            route="/api/**",
            resource="http://paywall.test/api/data",
            valid_after=0,
            valid_before=valid_before,
        )
        claim = store.claim(record)
        assert store.mark_pending(
            record.key, claim.owner, reason="settlement_unknown", tx_hash=None
        )

    report = sweep(store, env.facilitator(), LedgerRevenueBook(ledger))
    assert (report.settled, report.expired, report.still_pending, report.booked) == (1, 1, 1, 2)
    states = sorted(str(r.state) for r in store.records())
    assert states == ["expired", "pending", "settled", "settled"]
    with ledger.read() as session:
        (row,) = revenue_report(session=session, payee_address=env.merchant)
        assert row.posted == 2 * PRICE_ATOMIC
    again = sweep(store, env.facilitator(), LedgerRevenueBook(ledger))
    assert (again.settled, again.booked, again.still_pending) == (0, 0, 1)
