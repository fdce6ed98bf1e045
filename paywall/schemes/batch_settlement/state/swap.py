"""Compare-and-swap writes: a decision yields each UPDATE, and a driver runs it.

A charge or a hold's settle decides on the row as it read it, then yields a
:class:`Swap` whose WHERE names every column the decision read, and is sent
whether it wrote. :func:`drive` runs the writes in this thread;
:func:`drive_async` runs them through the SQLite group committer from the
event loop. The decision is written once and serves both.

From the loop, :class:`WrittenRows` keeps each row as this process's latest
queued write leaves it, so the next voucher on a channel decides on that
instead of reading the row back: the group committer runs writes in the
order they were queued, so a compare-and-swap decided on a queued write's
outcome lands right after it, or (if that write, or anyone else's since,
changed the row otherwise) does not land at all and is decided again on the
row as read. A value kept here is never trusted for more than a guess.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from farthing.invariant import invariant
from farthing.paywall.schemes.batch_settlement.state.record import ChannelRecord

__all__ = ["Swap", "WrittenRows", "drive", "drive_async"]

_T = TypeVar("_T")

# Channels whose last written row is kept: the most recently written ones.
WRITTEN_ROWS_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class Swap:
    """One compare-and-swap UPDATE for a driver to run: it wrote the row, or it did not.

    ``after`` is the row as the UPDATE leaves it when it writes.
    """

    sql: str
    params: dict[str, Any]
    after: ChannelRecord | None = None


class WrittenRows:
    """Each channel's row as this process's latest queued compare-and-swap leaves it.

    A guess to decide on, never a read: every write decided on it is a
    compare-and-swap naming what it decided on, and a refusal is only given
    on the row as read (``charge_steps``, ``hold_steps``). Bounded: the
    least recently written channels are forgotten first.
    """

    def __init__(self, size_max: int = WRITTEN_ROWS_MAX) -> None:
        self._rows: dict[bytes, ChannelRecord] = {}
        self._size_max = size_max
        self._lock = threading.Lock()

    def get(self, channel_id: bytes) -> ChannelRecord | None:
        return self._rows.get(channel_id)

    def expect(self, record: ChannelRecord) -> None:
        """``record`` is what the row will be once the write just queued lands."""
        with self._lock:
            rows = self._rows
            rows.pop(record.channel_id, None)
            rows[record.channel_id] = record
            if len(rows) > self._size_max:
                del rows[next(iter(rows))]

    def forget(self, record: ChannelRecord) -> None:
        """The write that was to leave ``record`` did not (nothing decided since replaced it)."""
        with self._lock:
            if self._rows.get(record.channel_id) is record:
                del self._rows[record.channel_id]

    def drop(self, channel_id: bytes) -> None:
        """The row changed otherwise (a mirror, a lock): read it next time."""
        with self._lock:
            self._rows.pop(channel_id, None)


def drive(steps: Generator[Swap, bool, _T], write: Callable[[Swap], bool]) -> _T:
    """Run a decision's writes in this thread; its outcome."""
    try:
        swap = next(steps)
        while True:
            swap = steps.send(write(swap))
    except StopIteration as stop:
        return cast(_T, stop.value)


async def drive_async(
    steps: Generator[Swap, bool, _T],
    write: Callable[[str, dict[str, Any]], Awaitable[int]],
    rows: WrittenRows | None = None,
) -> _T:
    """Run a decision's writes through the group committer from the loop; its outcome.

    With ``rows``, each write's ``after`` is kept there from the moment it is
    queued (the next decision on the loop may build on it) until it turns out
    not to have written.
    """
    try:
        swap = next(steps)
        while True:
            after = swap.after if rows is not None else None
            if after is not None:
                assert rows is not None
                rows.expect(after)
            try:
                written = await write(swap.sql, swap.params)
            except BaseException:
                if after is not None:
                    assert rows is not None
                    rows.forget(after)
                raise
            invariant(written in (0, 1), "a channel id names one row")
            if written != 1 and after is not None:
                assert rows is not None
                rows.forget(after)
            swap = steps.send(written == 1)
    except StopIteration as stop:
        return cast(_T, stop.value)
