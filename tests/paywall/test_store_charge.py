"""A payment row records its scheme and what its settlement moved, and a database from before those columns opens with its rows unchanged.

Real SQLite files and the real PostgreSQL test server (skipped only when it
is unreachable). An ``upto`` row claimed at its ceiling and settled for less
reads back with the charge (``PaymentRecord.charge``), which is what the
sweep books; an ``exact`` row's charge is its price; a settled amount that is
not a non-negative int is a programmer error. A table made by the code
before ``scheme`` and ``settled_amount`` existed gets them on open, on both
backends, and its rows read as ``exact`` at their own amount.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from farthing.paywall import PaymentKey, PaymentRecord, PaymentState, PaymentStore

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CEILING, CHARGE = 5_000_000, 1_234
TX = "0x" + "ab" * 32


def _postgres_or_skip() -> None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PaymentStore]:
    if request.param == "sqlite":
        store = PaymentStore.sqlite(tmp_path / "p.sqlite")
    else:
        _postgres_or_skip()
        store = PaymentStore(POSTGRES_URL)
    yield store
    store.dispose()


def _record(scheme: str) -> PaymentRecord:
    return PaymentRecord(
        key=PaymentKey(
            "eip155:31337",
            "0x" + "aa" * 20,
            "0x" + secrets.token_hex(20),  # this run's own rows in a shared database
            "0x" + secrets.token_hex(32),
        ),
        state=PaymentState.CLAIMED,
        owner="",
        pay_to="0x" + "cc" * 20,
        amount=CEILING,
        route="/chat",
        resource="http://shop/chat",
        valid_after=0,
        valid_before=2**40,
        scheme=scheme,
    )


def test_an_upto_row_settled_for_less_reads_back_its_charge(any_store: PaymentStore) -> None:
    store = any_store
    upto, exact = _record("upto"), _record("exact")
    upto_owner, exact_owner = store.claim(upto).owner, store.claim(exact).owner
    claimed = store.get(upto.key)
    assert claimed is not None and claimed.scheme == "upto" and not claimed.bookable
    for bad in (-1, True, "12"):
        with pytest.raises(TypeError):
            store.mark_settled(upto.key, upto_owner, tx_hash=TX, block_number=1, amount=bad)  # type: ignore[arg-type]
    assert store.mark_settled(upto.key, upto_owner, tx_hash=TX, block_number=1, amount=CHARGE)
    assert store.mark_settled(exact.key, exact_owner, tx_hash=TX, block_number=1)
    settled = store.get(upto.key)
    assert settled is not None and settled.bookable
    assert (settled.scheme, settled.amount, settled.settled_amount, settled.charge) == (
        "upto", CEILING, CHARGE, CHARGE,
    )  # fmt: skip
    plain = store.get(exact.key)
    assert plain is not None and plain.bookable
    assert (plain.scheme, plain.settled_amount, plain.charge) == ("exact", None, CEILING)
    unbooked = {r.key: r.charge for r in store.unbooked()}
    assert unbooked[upto.key] == CHARGE and unbooked[exact.key] == CEILING


_BEFORE_TABLE = """
CREATE TABLE paywall_payment (
    network VARCHAR(32) NOT NULL, token VARCHAR(42) NOT NULL,
    payer VARCHAR(42) NOT NULL, nonce VARCHAR(66) NOT NULL,
    state VARCHAR(16) NOT NULL, owner VARCHAR(32) NOT NULL, pay_to VARCHAR(42) NOT NULL,
    amount VARCHAR(78) NOT NULL, route VARCHAR(512) NOT NULL, resource VARCHAR(2048) NOT NULL,
    fiat_currency VARCHAR(16), fiat_rate VARCHAR(64),
    valid_after BIGINT NOT NULL, valid_before BIGINT NOT NULL,
    tx_hash VARCHAR(66), block_number BIGINT, reason VARCHAR(128),
    booked BOOLEAN NOT NULL, claimed_at_ns BIGINT NOT NULL, updated_at_ns BIGINT NOT NULL,
    lease_until_ns BIGINT, delivered_at_ns BIGINT,
    PRIMARY KEY (network, token, payer, nonce)
)
"""
_BEFORE_ROW = (
    "INSERT INTO paywall_payment VALUES ('eip155:31337', '0x" + "aa" * 20 + "', '0x" + "bb" * 20
    + "', '0x" + "03" * 32 + "', 'settled', 'old-owner', '0x" + "cc" * 20
    + "', '10000', '/api/**', 'http://shop/api/x', NULL, NULL, 0, 1099511627776, '" + TX
    + "', 7, NULL, FALSE, 1, 1, NULL, 1)"
)  # fmt: skip


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_database_from_before_the_charge_columns_opens_unchanged(
    backend: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = setup_url = f"sqlite:///{tmp_path / 'before.sqlite'}"
    else:
        _postgres_or_skip()
        schema = "charge_" + secrets.token_hex(4)
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
            connection.execute(text(_BEFORE_TABLE))
            connection.execute(text(_BEFORE_ROW))
        store = PaymentStore(url)
        try:
            (row,) = store.unbooked()
            assert (row.scheme, row.settled_amount, row.charge, row.bookable) == (
                "exact", None, 10_000, True,
            )  # fmt: skip
            PaymentStore(url).dispose()  # opening again changes nothing
            fresh = _record("upto")
            owner = store.claim(fresh).owner
            assert store.mark_settled(fresh.key, owner, tx_hash=TX, block_number=2, amount=0)
            again = store.get(fresh.key)
            assert again is not None and (again.scheme, again.charge) == ("upto", 0)
        finally:
            store.dispose()
    finally:
        if backend == "postgres":
            with engine.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
