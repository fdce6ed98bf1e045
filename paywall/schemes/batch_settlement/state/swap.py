"""Compare-and-swap writes: a decision yields each UPDATE, and a driver runs it.

A charge or a hold's settle decides on the row as it read it, then yields a
:class:`Swap` whose WHERE names every column the decision read, and is sent
whether it wrote. :func:`drive` runs the writes in this thread;
:func:`drive_async` runs them through the SQLite group committer from the
event loop. The decision is written once and serves both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from farthing.invariant import invariant

__all__ = ["Swap", "drive", "drive_async"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Swap:
    """One compare-and-swap UPDATE for a driver to run: it wrote the row, or it did not."""

    sql: str
    params: dict[str, Any]


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
) -> _T:
    """Run a decision's writes through the group committer from the loop; its outcome."""
    try:
        swap = next(steps)
        while True:
            written = await write(swap.sql, swap.params)
            invariant(written in (0, 1), "a channel id names one row")
            swap = steps.send(written == 1)
    except StopIteration as stop:
        return cast(_T, stop.value)
