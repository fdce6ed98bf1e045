"""Group commit: many threads' writes, each durable before its caller returns, one batch at a time."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from farthing.paywall.errors import PaymentStoreError
from farthing.paywall.records.group_commit import GroupCommitter, _Write

THREADS = 8
WRITES = 60


def _open(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "group.sqlite"
    with _open(path) as connection:
        connection.execute("CREATE TABLE counter (id TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        connection.executemany(
            "INSERT INTO counter VALUES (?, 0)",
            [(f"c{n}",) for n in range(THREADS)] + [("shared",)],
        )
    return path


def _committer(path: Path) -> GroupCommitter:
    @contextmanager
    def connect() -> Iterator[sqlite3.Connection]:
        connection = _open(path)
        try:
            yield connection
        except sqlite3.Error as exc:
            raise PaymentStoreError(f"the test database failed: {exc}") from None
        finally:
            connection.close()

    return GroupCommitter(connect)


def _value(path: Path, key: str) -> int:
    with _open(path) as connection:
        (value,) = connection.execute("SELECT value FROM counter WHERE id = ?", (key,)).fetchone()
    return int(value)


def test_every_write_of_every_thread_commits_once(database: Path) -> None:
    committer = _committer(database)

    def worker(n: int) -> None:
        for _ in range(WRITES):
            written = committer.execute(
                "UPDATE counter SET value = value + 1 WHERE id = :id", {"id": f"c{n}"}
            )
            assert written == 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [_value(database, f"c{n}") for n in range(THREADS)] == [WRITES] * THREADS


def test_compare_and_swap_in_one_batch_sees_the_writes_before_it(database: Path) -> None:
    """Threads racing one row with compare-and-swap: each value is won exactly once."""
    committer = _committer(database)
    wins: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(WRITES):
            while True:
                seen = _value(database, "shared")
                if committer.execute(
                    "UPDATE counter SET value = :new WHERE id = 'shared' AND value = :seen",
                    {"new": seen + 1, "seen": seen},
                ):
                    with lock:
                        wins.append(seen + 1)
                    break

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == list(range(1, 4 * WRITES + 1))
    assert _value(database, "shared") == 4 * WRITES


def test_a_failing_write_fails_its_batch_and_writes_nothing_of_it(database: Path) -> None:
    committer = _committer(database)
    with pytest.raises(PaymentStoreError, match="no such table"):
        committer.execute("UPDATE missing SET value = 1", {})
    # The committer is usable after a failed batch, and the failure left nothing behind.
    assert committer.execute("UPDATE counter SET value = 7 WHERE id = 'c0'", {}) == 1
    assert _value(database, "c0") == 7


def test_writes_queued_behind_a_failing_one_get_its_error_not_a_partial_commit(
    database: Path,
) -> None:
    committer = _committer(database)
    # A batch as the writer would take it: a good write, then a bad one.
    good = _Write("UPDATE counter SET value = 5 WHERE id = 'c1'", {})
    bad = _Write("UPDATE missing SET value = 1", {})
    committer._commit([good, bad])
    assert isinstance(good.error, PaymentStoreError)
    assert isinstance(bad.error, PaymentStoreError)
    assert good.error is not bad.error  # each caller raises its own
    assert _value(database, "c1") == 0


def test_coroutines_on_one_loop_share_batches_and_each_write_lands(database: Path) -> None:
    committer = _committer(database)

    async def lane(n: int) -> None:
        for _ in range(WRITES):
            written = await committer.execute_async(
                "UPDATE counter SET value = value + 1 WHERE id = :id", {"id": f"c{n}"}
            )
            assert written == 1

    async def main() -> None:
        await asyncio.gather(*(lane(n) for n in range(THREADS)))

    asyncio.run(main())
    assert [_value(database, f"c{n}") for n in range(THREADS)] == [WRITES] * THREADS
    committer.close()


def test_a_cancelled_caller_waits_for_its_write_then_is_cancelled(database: Path) -> None:
    committer = _committer(database)
    outcome: list[int] = []

    async def write() -> None:
        outcome.append(
            await committer.execute_async("UPDATE counter SET value = 9 WHERE id = 'c2'", {})
        )

    async def main() -> None:
        task = asyncio.create_task(write())
        await asyncio.sleep(0)  # queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # By the time the cancellation reached the caller, the write was over.
        assert _value(database, "c2") == 9

    asyncio.run(main())
    assert outcome == []
    committer.close()


def test_close_finishes_the_queue_and_a_later_write_starts_a_new_writer(database: Path) -> None:
    committer = _committer(database)
    assert committer.execute("UPDATE counter SET value = 1 WHERE id = 'c3'", {}) == 1
    committer.close()
    assert committer._writer is None
    assert committer.execute("UPDATE counter SET value = 2 WHERE id = 'c3'", {}) == 1
    committer.close()
    assert _value(database, "c3") == 2
