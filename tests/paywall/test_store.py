"""Nonce claims are atomic across processes, and only the claim's owner can move it.

Real SQLite files and real OS processes: four processes race to claim the
same keys; exactly one claim per key wins. The same holds for threads on
SQLite and on PostgreSQL (skipped only when its test server is unreachable). The state machine
(claimed, released and retaken, settled, pending and reclaimed) is checked
step by step, including a mover with the wrong owner token.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from farthing.paywall import PaymentKey, PaymentRecord, PaymentState, PaymentStore
from farthing.paywall.errors import PaymentStoreError, PaywallConfigError

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _record(nonce: str, payer: str = "0x" + "bb" * 20) -> PaymentRecord:
    return PaymentRecord(
        key=PaymentKey("eip155:31337", "0x" + "AA" * 20, payer, nonce),
        state=PaymentState.CLAIMED,
        owner="",
        pay_to="0x" + "cc" * 20,
        amount=10_000,
        route="/api/**",
        resource="http://shop/api/x",
        valid_after=0,
        valid_before=2**40,
    )


def _race(path: str, nonces: list[str], wins: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = PaymentStore.sqlite(path)
    won = [n for n in nonces if store.claim(_record(n)).won]
    wins.put(won)
    store.dispose()


def test_four_processes_claim_each_nonce_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "claims.sqlite")
    PaymentStore.sqlite(path).dispose()  # create the table before the race
    nonces = ["0x" + secrets.token_hex(32) for _ in range(40)]
    context = multiprocessing.get_context("spawn")
    wins = context.Queue()
    workers = [context.Process(target=_race, args=(path, nonces, wins)) for _ in range(4)]
    for worker in workers:
        worker.start()
    results = [wins.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    won = [nonce for result in results for nonce in result]
    assert sorted(won) == sorted(nonces)  # every nonce claimed once, none twice


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PaymentStore]:
    """A SQLite file, or PostgreSQL when the test server answers."""
    if request.param == "sqlite":
        store = PaymentStore.sqlite(tmp_path / "p.sqlite")
    else:
        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        except psycopg.OperationalError:
            pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")
        store = PaymentStore(POSTGRES_URL)
    yield store
    store.dispose()


def test_threads_claim_each_nonce_exactly_once(any_store: PaymentStore) -> None:
    payer = "0x" + secrets.token_hex(20)  # this run's own rows in a shared database
    nonces = ["0x" + secrets.token_hex(32) for _ in range(25)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda n: any_store.claim(_record(n, payer)).won, nonces * 4))
    assert sum(outcomes) == len(nonces)


def test_the_claim_state_machine(any_store: PaymentStore) -> None:
    store = any_store
    record = _record("0x" + secrets.token_hex(32), "0x" + secrets.token_hex(20))
    first = store.claim(record)
    assert first.won and first.owner
    lost = store.claim(record)
    assert (
        not lost.won and lost.existing is not None and lost.existing.state == PaymentState.CLAIMED
    )
    assert not store.release(record.key, "not-the-owner")
    assert store.release(record.key, first.owner)
    again = store.claim(record)  # a released claim may be taken once more
    assert again.won and again.owner != first.owner
    assert not store.mark_settled(record.key, first.owner, tx_hash="0x" + "ab" * 32, block_number=1)
    assert store.mark_pending(
        record.key, again.owner, reason="settlement_pending", tx_hash="0x" + "AB" * 32
    )
    assert not store.claim(record).won  # pending is not released: no new claim
    resumed = store.reclaim_pending(record.key)
    assert resumed.won and not store.reclaim_pending(record.key).won
    assert store.mark_settled(record.key, resumed.owner, tx_hash="0x" + "ab" * 32, block_number=7)
    settled = store.get(record.key)
    assert settled is not None and settled.state == PaymentState.SETTLED
    assert settled.tx_hash == "0x" + "ab" * 32 and settled.block_number == 7
    assert settled.key.token == "0x" + "aa" * 20  # keys are stored lowercase
    assert record.key in [r.key for r in store.unbooked()]
    store.mark_booked(record.key)
    assert record.key not in [r.key for r in store.unbooked()]


def test_database_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PaywallConfigError, match="must be a file"):
        PaymentStore("sqlite://")
    with pytest.raises(PaywallConfigError, match="unsupported"):
        PaymentStore("mysql://x/y")
    with pytest.raises(PaywallConfigError, match="cannot parse"):
        PaymentStore("::not a url::")
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(PaymentStoreError, match="dir.sqlite"):
        PaymentStore.sqlite(tmp_path / "dir.sqlite")
