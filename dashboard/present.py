"""How the dashboard writes things for people: times, absent limits, ids in audit text.

Times are UTC, written ``2026-12-03 16:04:05 UTC``; the epoch seconds stay
in the exports' ``*_s`` columns for scripts. A daily limit nobody set reads
as "no daily limit", never as a limit of zero. Transfer ids are written one
way everywhere (``farthing.ledger.ids``), also inside audit subjects, whose
stored text (part of the hash chain) keeps the decimal id it was written with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from markupsafe import Markup

from farthing.dashboard.listing import Money
from farthing.ledger.ids import display_subject

__all__ = ["NO_DAILY_LIMIT", "limit_text", "no_limit_chart", "problem_text", "utc_time"]

NO_DAILY_LIMIT = "no daily limit"
_SECONDS_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime writes


def utc_time(seconds: int | None) -> str:
    """Epoch seconds as a UTC time for people; ``-`` for none."""
    if seconds is None:
        return "-"
    if not 0 <= seconds <= _SECONDS_MAX:
        return f"{seconds} s after 1970"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def limit_text(money: Money, limit_total: int, *, has_limit: bool) -> str:
    """The overview's "of 1.5 USDC daily limits", or that no budget has one."""
    if not has_limit:
        return NO_DAILY_LIMIT
    return f"of {money.format(limit_total)} daily limits"


def no_limit_chart(whose: str) -> Markup:
    """In place of a burn-down: there is no limit to burn down."""
    return Markup(
        '<p class="empty">{} no daily limit, so there is nothing to burn down.</p>'
    ).format(whose)


def problem_text(problem: Any) -> str:
    """An audit problem as ``farthing ledger verify`` words it, with ids in the one form."""
    subject = getattr(problem, "subject", None)
    if subject and dataclasses.is_dataclass(problem) and not isinstance(problem, type):
        problem = dataclasses.replace(problem, subject=display_subject(subject))
    return str(problem)
