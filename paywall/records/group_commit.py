"""Group commit for SQLite: the writes of many requests made durable by one commit.

With ``synchronous=FULL`` every SQLite commit waits for the disk (an fsync of
the write-ahead log): a fraction of a millisecond on a quiet disk, several
on a busy one. The channel voucher path writes twice a request (the charge
is held, then made final once the answer is sent: paywall/schemes/batch_settlement/holds.py),
so one fsync a write would cap a server at a few hundred paid requests a
second whatever its CPU could do. Here one writer thread takes every write queued while it
was committing the last batch and runs them in one ``BEGIN IMMEDIATE …
COMMIT``: one fsync for the batch, and each write still durable before its
caller goes on.

Each queued statement keeps its own meaning inside the batch: statements run
in arrival order, so a compare-and-swap ``UPDATE`` that follows another on
the same row sees that row as the first one left it, exactly as if it had
committed alone. A batch fails or commits as a whole; on failure every caller
in it gets the error and nothing of the batch is written.

Callers wait in either of two ways: :meth:`GroupCommitter.execute` blocks a
thread; :meth:`GroupCommitter.execute_async` awaits on an asyncio event loop,
which then pays no thread hand-off of its own per request (the writer wakes
the loop once per batch).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from copy import copy
from dataclasses import dataclass
from typing import Any, Final

from farthing.invariant import invariant
from farthing.paywall.errors import PaymentStoreError

__all__ = ["GroupCommitter"]

# How long close() waits for the writer to finish the batch in hand.
_CLOSE_WAIT_S: Final = 30.0


@dataclass(slots=True)
class _Write:
    sql: str
    params: Mapping[str, Any]
    # Exactly one way to wake the caller: a thread's event or a loop's future.
    event: threading.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None
    rowcount: int = -1
    error: Exception | None = None
    done: bool = False

    def result(self) -> int:
        invariant(self.done, "a write is read only once its batch is over")
        if self.error is not None:
            raise self.error
        return self.rowcount


def _wake_all(writes: list[_Write]) -> None:
    for write in writes:
        if write.future is not None and not write.future.done():
            write.future.set_result(None)


class GroupCommitter:
    """One writer thread running queued SQLite writes in shared transactions.

    ``connect`` returns a context manager giving a DB-API connection in
    autocommit mode (``isolation_level = None``) and turning driver errors
    into the caller's own; the batch's transaction is managed here. The
    writer thread starts with the first write and ends at :meth:`close`.
    """

    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queued: list[_Write] = []
        self._writer: threading.Thread | None = None
        self._stopping = False

    def execute(self, sql: str, params: Mapping[str, Any]) -> int:
        """Run one write statement durably; its row count once its batch committed."""
        write = _Write(sql, params, event=threading.Event())
        self._submit(write)
        assert write.event is not None
        write.event.wait()
        return write.result()

    async def execute_async(self, sql: str, params: Mapping[str, Any]) -> int:
        """:meth:`execute` for a coroutine on an asyncio loop.

        Once queued, the write happens whatever the caller does. A caller
        cancelled meanwhile still waits for the batch to be over (so nothing
        it owns is used after it returns), then the cancellation goes on; a
        caller that must know the outcome shields its call.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        write = _Write(sql, params, loop=loop, future=future)
        self._submit(write)
        cancelled: asyncio.CancelledError | None = None
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError as exc:
                cancelled = exc
        if cancelled is not None:
            raise cancelled
        return write.result()

    def close(self) -> None:
        """Finish what is queued and stop the writer thread (a later write starts another)."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=_CLOSE_WAIT_S)
        with self._lock:
            self._stopping = False

    def _submit(self, write: _Write) -> None:
        with self._lock:
            self._queued.append(write)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name="farthing-group-commit", daemon=True
                )
                self._writer.start()
            self._wake.notify()

    def _run(self) -> None:
        batch: list[_Write] = []
        try:
            while True:
                with self._lock:
                    while not self._queued and not self._stopping:
                        self._wake.wait()
                    if not self._queued:
                        self._writer = None  # stopped with nothing left to write
                        return
                    batch, self._queued = self._queued, []
                self._commit(batch)
                self._finish(batch)
                batch = []
        except BaseException:
            # The writer itself failed (not a write: those are caught in
            # _commit). Fail what it held and what is queued; the next write
            # starts a new writer.
            with self._lock:
                stranded, self._queued = batch + self._queued, []
                self._writer = None
            lost = PaymentStoreError("the channel database writer stopped")
            for write in stranded:
                if not write.done:
                    write.error = copy(lost)
            self._finish([write for write in stranded if not write.done])
            raise

    def _commit(self, batch: list[_Write]) -> None:
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
        except Exception as exc:  # noqa: BLE001 - handed to every caller in the batch
            for write in batch:
                write.error = copy(exc)
        else:
            for write, count in zip(batch, counts, strict=True):
                write.rowcount = count

    @staticmethod
    def _finish(batch: list[_Write]) -> None:
        waiting: dict[asyncio.AbstractEventLoop, list[_Write]] = {}
        for write in batch:
            write.done = True
            if write.event is not None:
                write.event.set()
            elif write.loop is not None:
                waiting.setdefault(write.loop, []).append(write)
        for loop, writes in waiting.items():
            with suppress(RuntimeError):  # a closed loop: nobody is waiting there
                loop.call_soon_threadsafe(_wake_all, writes)
