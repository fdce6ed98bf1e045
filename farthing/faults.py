"""Named crash points: where a test may kill this process with SIGKILL.

A payment crosses several steps (reserve, sign, send, claim, submit, mark,
book, …) and a process can die between any two of them. Each step calls
:func:`crash_point` with a dotted name; ``docs/reliability.md`` lists every
name, the recovery that follows a crash there, and the test that proves it.

The hook is off unless the environment names the point when the process
starts::

    FARTHING_CRASH_AT=paywall.after_submit farthing paywall serve …

The process then sends itself ``SIGKILL`` the first time it reaches that
point: no ``finally`` block, no atexit handler and no buffered write runs,
exactly as when the machine loses power or an operator runs ``kill -9``.
Several names may be given, separated by commas. With the variable unset the
check is one frozenset lookup, so the calls stay in production code.

Only the tests in ``tests/faults/`` set the variable; nothing else should.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ["CRASH_AT_ENV", "crash_point", "crash_points_armed"]

CRASH_AT_ENV: Final = "FARTHING_CRASH_AT"


def _armed_from_env() -> frozenset[str]:
    raw = os.environ.get(CRASH_AT_ENV, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


_ARMED: Final = _armed_from_env()


def crash_points_armed() -> frozenset[str]:
    """The crash points this process was started with (empty in normal use)."""
    return _ARMED


def crash_point(name: str) -> None:
    """Die here, at once and without cleanup, if ``name`` was armed at start."""
    if _ARMED and name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
