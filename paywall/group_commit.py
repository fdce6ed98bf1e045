"""Group commit for SQLite: the writes of many threads made durable by one commit.

With ``synchronous=FULL`` every SQLite commit waits for the disk (an fsync of
the write-ahead log): a fraction of a millisecond on a quiet disk, several
on a busy one. The channel voucher path writes once a request, so one fsync
a write would cap a server at a few hundred paid requests a second whatever
its CPU could do. Here the writes that arrive while a commit is in flight are
queued, and the next writer to take the turn runs all of them in one
``BEGIN IMMEDIATE … COMMIT``: one fsync for the batch, and each write still
durable before its caller returns.

Each queued statement keeps its own meaning inside the batch: statements run
in arrival order, so a compare-and-swap ``UPDATE`` that follows another on
the same row sees that row as the first one left it, exactly as if it had
committed alone. A batch fails or commits as a whole; on failure every caller
in it gets the error and nothing of the batch is written.

There is no background thread: a caller that finds the turn free is the
leader, runs whatever is queued (its own write included), and wakes the
others, whose writes are then already done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from copy import copy
from dataclasses import dataclass
from typing import Any

from farthing.invariant import invariant

__all__ = ["GroupCommitter"]


@dataclass(slots=True)
class _Write:
    sql: str
    params: Mapping[str, Any]
    rowcount: int = -1
    error: Exception | None = None
    done: bool = False


class GroupCommitter:
    """Runs ``execute`` calls of many threads in shared SQLite transactions.

    ``connect`` returns a context manager giving a DB-API connection in
    autocommit mode (``isolation_level = None``) and turning driver errors
    into the caller's own; the batch's transaction is managed here.
    """

    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]) -> None:
        self._connect = connect
        self._queued: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    def execute(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run one write statement durably; its row count once its batch committed."""
        write = _Write(sql, params)
        with self._queue_lock:
            self._queued.append(write)
        with self._turn:
            # Whoever held the turn before us may have committed our write.
            if not write.done:
                self._run_batch()
        invariant(write.done, "a queued write is run by the batch that takes it")
        if write.error is not None:
            raise write.error
        return write.rowcount

    def _run_batch(self) -> None:
        with self._queue_lock:
            batch, self._queued = self._queued, []
        counts: list[int] = []
        try:
            with self._connect() as connection:
                cursor = connection.cursor()
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    try:
                        for write in batch:
                            cursor.execute(write.sql, write.params)
                            counts.append(cursor.rowcount)
                        cursor.execute("COMMIT")
                    except BaseException:
                        with suppress(Exception):
                            cursor.execute("ROLLBACK")
                        raise
                finally:
                    cursor.close()
        except Exception as exc:  # handed to every caller in the batch, the leader included
            for write in batch:
                write.error = copy(exc)
        except BaseException:
            interrupted = RuntimeError("the write was interrupted before it committed")
            for write in batch:
                write.error = interrupted
            raise
        else:
            for write, count in zip(batch, counts, strict=True):
                write.rowcount = count
        finally:
            for write in batch:
                write.done = True
