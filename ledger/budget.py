"""Budget policy: the limits an agent's spending must stay within.

A budget is a "debits must not exceed credits" account (the total budget is
whatever has been credited to it) plus a ``BudgetPolicy`` with the other
limits. Usage is kept in hourly buckets per payee (``BudgetUsage``); the
rolling daily window is the current hour plus the 24 before it, so a payment
counts against the daily limit for at least 24 hours and at most 25. Erring
long is deliberate: a limit may refuse slightly early, never late.

Everything here is pure; ``books.py`` calls it while the write lock is held.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from farthing.ledger.results import CreateTransferResult

__all__ = ["BudgetPolicy"]

NS_PER_HOUR = 3_600 * 1_000_000_000
WINDOW_HOURS = 25  # the current hour and the 24 whole hours before it
TOTAL_PAYEE = 0  # the BudgetUsage bucket that sums every payee


def hour_of(timestamp_ns: int) -> int:
    return timestamp_ns // NS_PER_HOUR


def window_hours(hour: int) -> range:
    return range(hour - WINDOW_HOURS + 1, hour + 1)


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """The limits on one budget account, in the account's atomic units.

    ``None`` means "no limit of this kind". ``asset_allowlist`` holds CAIP-19
    ids; a payment must name an allowed asset when the list is set.
    """

    account_id: int
    agent_id: str
    payment_cap: int | None = None
    daily_limit: int | None = None
    payee_daily_cap: int | None = None
    asset_allowlist: frozenset[str] | None = None

    def allowlist_json(self) -> str | None:
        if self.asset_allowlist is None:
            return None
        return json.dumps(sorted(self.asset_allowlist))

    @staticmethod
    def parse_allowlist(text: str | None) -> frozenset[str] | None:
        return None if text is None else frozenset(json.loads(text))


def window_sum(usage: Mapping[tuple[int, int], int], payee: int, hour: int) -> int:
    return sum(usage.get((payee, h), 0) for h in window_hours(hour))


def headroom(
    policy: BudgetPolicy,
    usage: Mapping[tuple[int, int], int],
    *,
    payee: int,
    hour: int,
) -> list[tuple[CreateTransferResult, int]]:
    """Each rolling limit with what is left of it, in the order they are checked."""
    room: list[tuple[CreateTransferResult, int]] = []
    if policy.payment_cap is not None:
        room.append((CreateTransferResult.EXCEEDS_PAYMENT_CAP, policy.payment_cap))
    if policy.daily_limit is not None:
        used = window_sum(usage, TOTAL_PAYEE, hour)
        room.append((CreateTransferResult.EXCEEDS_DAILY_LIMIT, max(0, policy.daily_limit - used)))
    if policy.payee_daily_cap is not None:
        used = window_sum(usage, payee, hour)
        room.append(
            (CreateTransferResult.EXCEEDS_PAYEE_DAILY_CAP, max(0, policy.payee_daily_cap - used))
        )
    return room


def asset_allowed(policy: BudgetPolicy, asset_id: str | None) -> bool:
    if policy.asset_allowlist is None:
        return True
    return asset_id is not None and asset_id in policy.asset_allowlist


def validate_limits(values: Iterable[int | None], amount_max: int) -> str | None:
    """The reason a set of limits is unusable, or None when they are fine."""
    for value in values:
        if value is None:
            continue
        if type(value) is not int:
            raise TypeError("budget limits must be ints in atomic units")
        if value < 0:
            return "limit_must_not_be_negative"
        if value > amount_max:
            return "limit_must_not_exceed_max"
    return None
