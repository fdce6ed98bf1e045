"""A nonce claim is a lease: a live owner keeps it, a dead owner's claim is taken over once, and a late owner cannot overwrite the takeover.

Real SQLite files and the real PostgreSQL test server (skipped only when it is
unreachable). The lease is checked move by move with a short lease: a live
claim cannot be taken over, renewing keeps it, an expired one is taken over by
exactly one of several racing takers, and every move of the old owner fails
afterwards. A settled payment whose content was never delivered can be taken
over for delivery once. A database made by the previous code (no lease
columns) gets them added on open, on both backends, and its old stuck claims
count as expired while its settled rows stay closed.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from farthing.paywall import PaymentKey, PaymentRecord, PaymentState, PaymentStore

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
LEASE_S = 0.3


def _record() -> PaymentRecord:
    return PaymentRecord(
        key=PaymentKey(
            "eip155:31337",
            "0x" + "aa" * 20,
            "0x" + secrets.token_hex(20),
            "0x" + secrets.token_hex(32),
        ),
        state=PaymentState.CLAIMED,
        owner="",
        pay_to="0x" + "cc" * 20,
        amount=10_000,
        route="/api/**",
        resource="http://shop/api/x",
        valid_after=0,
        valid_before=2**40,
    )


def _postgres_or_skip() -> None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PaymentStore]:
    if request.param == "sqlite":
        store = PaymentStore.sqlite(tmp_path / "lease.sqlite")
    else:
        _postgres_or_skip()
        store = PaymentStore(POSTGRES_URL)
    yield store
    store.dispose()


def test_a_live_claim_is_kept_and_an_expired_one_is_taken_over_once(
    any_store: PaymentStore,
) -> None:
    store = any_store
    record = _record()
    # Leases here are long next to a loaded machine's scheduling delays: what
    # is timed is only "past the first lease" and "past the last renewal".
    first = store.claim(record, lease_s=2.0)
    assert first.won
    assert not store.take_over(record.key, lease_s=LEASE_S).won  # the owner is alive
    assert store.renew(record.key, first.owner, lease_s=60.0)
    time.sleep(2.2)
    assert not store.take_over(record.key, lease_s=LEASE_S).won  # renewed: still alive
    assert not store.claim(record, lease_s=LEASE_S).won  # never a fresh claim over it
    assert store.renew(record.key, first.owner, lease_s=LEASE_S)  # its last renewal, then it dies
    time.sleep(LEASE_S + 0.2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        takers = list(pool.map(lambda _: store.take_over(record.key, lease_s=30), range(6)))
    winners = [t for t in takers if t.won]
    assert len(winners) == 1
    taken = winners[0]
    assert taken.existing is not None and taken.existing.state == PaymentState.CLAIMED
    # The old owner woke up: none of its moves lands, whatever it learnt.
    assert not store.renew(record.key, first.owner, lease_s=LEASE_S)
    assert not store.mark_settled(record.key, first.owner, tx_hash="0x" + "11" * 32, block_number=1)
    assert not store.mark_failed(record.key, first.owner, reason="nonce_already_used")
    assert not store.release(record.key, first.owner)
    assert store.mark_settled(record.key, taken.owner, tx_hash="0x" + "22" * 32, block_number=2)
    settled = store.get(record.key)
    assert settled is not None and settled.state == PaymentState.SETTLED
    assert settled.tx_hash == "0x" + "22" * 32 and not settled.delivered


def test_an_undelivered_settlement_is_handed_over_for_delivery_once(
    any_store: PaymentStore,
) -> None:
    store = any_store
    record = _record()
    owner = store.claim(record, lease_s=LEASE_S).owner
    assert store.mark_settled(record.key, owner, tx_hash="0x" + "33" * 32, block_number=3)
    assert not store.take_over(record.key, lease_s=LEASE_S).won  # the owner is sending it
    time.sleep(LEASE_S + 0.1)
    courier = store.take_over(record.key, lease_s=LEASE_S)
    assert courier.won and courier.existing is not None
    assert courier.existing.state == PaymentState.SETTLED
    assert not store.release(record.key, courier.owner)  # settled stays settled
    assert store.mark_delivered(record.key, courier.owner)
    time.sleep(LEASE_S + 0.1)
    assert not store.take_over(record.key, lease_s=LEASE_S).won  # delivered: closed for good
    assert record.key not in [r.key for r in store.sweepable()]


def test_the_sweep_sees_pending_rows_and_expired_claims_only(any_store: PaymentStore) -> None:
    store = any_store
    live, dead, pending = _record(), _record(), _record()
    store.claim(live, lease_s=60)
    store.claim(dead, lease_s=LEASE_S)
    owner = store.claim(pending, lease_s=60).owner
    assert store.mark_pending(pending.key, owner, reason="settlement_pending", tx_hash=None)
    time.sleep(LEASE_S + 0.1)
    keys = {r.key for r in store.sweepable()}
    assert dead.key in keys and pending.key in keys and live.key not in keys


_OLD_TABLE = """
CREATE TABLE paywall_payment (
    network VARCHAR(32) NOT NULL, token VARCHAR(42) NOT NULL,
    payer VARCHAR(42) NOT NULL, nonce VARCHAR(66) NOT NULL,
    state VARCHAR(16) NOT NULL, owner VARCHAR(32) NOT NULL, pay_to VARCHAR(42) NOT NULL,
    amount VARCHAR(78) NOT NULL, route VARCHAR(512) NOT NULL, resource VARCHAR(2048) NOT NULL,
    fiat_currency VARCHAR(16), fiat_rate VARCHAR(64),
    valid_after BIGINT NOT NULL, valid_before BIGINT NOT NULL,
    tx_hash VARCHAR(66), block_number BIGINT, reason VARCHAR(128),
    booked BOOLEAN NOT NULL, claimed_at_ns BIGINT NOT NULL, updated_at_ns BIGINT NOT NULL,
    PRIMARY KEY (network, token, payer, nonce)
)
"""


def _old_row(nonce: str, state: str) -> str:
    return (
        "INSERT INTO paywall_payment VALUES ('eip155:31337', '0x"
        + "aa" * 20
        + "', '0x"
        + "bb" * 20
        + f"', '{nonce}', '{state}', 'old-owner', '0x"
        + "cc" * 20
        + "', '10000', '/api/**', 'http://shop/api/x', NULL, NULL, 0, 1099511627776, NULL,"
        " NULL, NULL, FALSE, 1, 1)"
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_database_from_the_previous_code_gets_the_lease_columns(
    backend: str, tmp_path: Path
) -> None:
    stuck, done = "0x" + "01" * 32, "0x" + "02" * 32
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
        setup_url = url
    else:
        _postgres_or_skip()
        schema = "lease_" + secrets.token_hex(4)
        setup_url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://")
        admin = create_engine(setup_url)
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
        # The store sees only this schema: the shared database's own table is untouched.
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        setup_url = f"{setup_url}?options=-csearch_path%3D{schema}"
    engine = create_engine(setup_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(_OLD_TABLE))
            connection.execute(text(_old_row(stuck, "claimed")))
            connection.execute(text(_old_row(done, "settled")))
        store = PaymentStore(url)
        try:
            key = PaymentKey("eip155:31337", "0x" + "aa" * 20, "0x" + "bb" * 20, stuck)
            assert key in [r.key for r in store.sweepable()]  # no lease: its owner is long gone
            assert store.take_over(key, lease_s=LEASE_S).won
            old_settled = PaymentKey("eip155:31337", "0x" + "aa" * 20, "0x" + "bb" * 20, done)
            assert not store.take_over(old_settled, lease_s=LEASE_S).won  # delivered back then
            PaymentStore(url).dispose()  # opening again changes nothing
        finally:
            store.dispose()
    finally:
        if backend == "postgres":
            with engine.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
