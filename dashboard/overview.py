"""The overview's figures, read from the books in one short read each.

Every query is bounded by time or by count so a page costs the same with a
thousand transfers or a million (``benchmarks/bench_dashboard.py``):

* spend per agent: each budget account's balances and its hourly usage
  buckets for the rolling day, the same buckets the daily limit is checked
  against (``farthing.ledger.budget``), so the figure is what the limit sees;
* the burn-down: those buckets since UTC midnight, summed per hour, against
  the sum of the daily limits;
* payments per minute: settled payments and revenue of the last hour;
* revenue per site and article: posted revenue transfers since UTC midnight
  (the merchant's books), and the paywall's settled payments when its
  database is given.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from farthing.agents.ceilings import UPTO_PAYMENT
from farthing.agents.channels.books import ChannelTransferCode as AgentChannelCode
from farthing.dashboard.listing import Listing, Money
from farthing.ledger.budget import TOTAL_PAYEE, WINDOW_HOURS, hour_of
from farthing.ledger.codes import TransferCode
from farthing.ledger.flags import NOT_POSTED_FLAGS
from farthing.ledger.report import ledger_decimals
from farthing.ledger.tables import Account, Budget, BudgetUsage, Transfer, table_of
from farthing.paywall.records.books import ChannelTransferCode as MerchantChannelCode

__all__ = [
    "AgentSpend",
    "BurnDown",
    "RevenueLine",
    "agent_spend",
    "burn_down",
    "midnight_ns",
    "money_of",
    "payments_per_minute",
    "paywall_revenue",
    "revenue_by_resource",
    "revenue_listing",
    "spend_listing",
]

NS_PER_MINUTE = 60 * 1_000_000_000
_transfers = table_of(Transfer)
_budgets = table_of(Budget)
_accounts = table_of(Account)
_usage = table_of(BudgetUsage)


def midnight_ns(now_ns: int) -> int:
    """The start of ``now_ns``'s UTC day."""
    day = dt.datetime.fromtimestamp(now_ns // 1_000_000_000, dt.UTC).date()
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9


def money_of(session: Session) -> dict[int, Money]:
    return {ledger: Money(d, s) for ledger, (d, s) in ledger_decimals(session=session).items()}


@dataclass(frozen=True, slots=True)
class AgentSpend:
    agent_id: str
    account_id: int
    ledger: int
    daily_used: int  # reserved plus posted in the rolling day, as the daily limit counts it
    daily_limit: int | None
    funded: int
    spent: int
    reserved: int

    @property
    def available(self) -> int:
        return self.funded - self.spent - self.reserved

    @property
    def daily_left(self) -> int | None:
        return None if self.daily_limit is None else max(0, self.daily_limit - self.daily_used)


def _day_usage(session: Session, now_ns: int, account_id: int | None) -> dict[int, int]:
    hour = hour_of(now_ns)
    query = (
        select(_usage.c.account_id, _usage.c.amount)
        .where(_usage.c.hour > hour - WINDOW_HOURS, _usage.c.hour <= hour)
        .where(_usage.c.payee_account_id == TOTAL_PAYEE)
    )
    if account_id is not None:
        query = query.where(_usage.c.account_id == account_id)
    used: dict[int, int] = defaultdict(int)
    for row in session.execute(query):
        used[row.account_id] += int(row.amount)
    return used


def agent_spend(
    session: Session, now_ns: int, *, account_id: int | None = None
) -> list[AgentSpend]:
    """Every agent's (or one budget account's) rolling-day spend and balances, biggest first."""
    used = _day_usage(session, now_ns, account_id)
    query = select(
        _budgets.c.agent_id,
        _budgets.c.account_id,
        _budgets.c.daily_limit,
        _accounts.c.ledger,
        _accounts.c.credits_posted,
        _accounts.c.debits_posted,
        _accounts.c.debits_pending,
    ).join(_accounts, _accounts.c.id == _budgets.c.account_id)
    if account_id is not None:
        query = query.where(_budgets.c.account_id == account_id)
    rows = [
        AgentSpend(
            agent_id=row.agent_id,
            account_id=row.account_id,
            ledger=row.ledger,
            daily_used=used.get(row.account_id, 0),
            daily_limit=row.daily_limit,
            funded=row.credits_posted,
            spent=row.debits_posted,
            reserved=row.debits_pending,
        )
        for row in session.execute(query)
    ]
    rows.sort(key=lambda r: (-r.daily_used, r.agent_id))
    return rows


def spend_listing(spend: list[AgentSpend], money: dict[int, Money]) -> Listing:
    rows = []
    for item in spend:
        m = money.get(item.ledger, Money())
        rows.append(
            {
                "agent": item.agent_id,
                "spent_today": m.format(item.daily_used),
                "daily_limit": m.format(item.daily_limit)
                if item.daily_limit is not None
                else "none",
                "daily_left": m.format(item.daily_left) if item.daily_left is not None else "-",
                "available": m.format(item.available),
                "reserved": m.format(item.reserved),
                "spent_today_atomic": str(item.daily_used),
                "daily_limit_atomic": "" if item.daily_limit is None else str(item.daily_limit),
                "available_atomic": str(item.available),
                "reserved_atomic": str(item.reserved),
            }
        )
    columns = ("agent", "spent_today", "daily_limit", "daily_left", "available", "reserved",
               "spent_today_atomic", "daily_limit_atomic", "available_atomic", "reserved_atomic")  # fmt: skip
    hidden = tuple(c for c in columns if c.endswith("_atomic"))
    return Listing("spend", "Spend per agent, rolling day", columns, rows, hidden)


@dataclass(frozen=True, slots=True)
class BurnDown:
    """Cumulative spend of every budget per hour since UTC midnight, against their limits.

    ``used_by_hour`` counts only the budgets that have a daily limit, so it is
    measured against their sum; ``spent_today`` counts every budget.
    """

    midnight_ns: int
    limit_total: int  # Σ daily limits of the budgets that have one
    used_by_hour: tuple[int, ...]  # cumulative, one per hour elapsed (current hour last)
    ledger: int | None
    has_limit: bool = False  # some budget has a daily limit
    spent_today: int = 0  # every budget's spend since midnight, limited or not


def burn_down(session: Session, now_ns: int, *, account_id: int | None = None) -> BurnDown:
    start = midnight_ns(now_ns)
    first, last = hour_of(start), hour_of(now_ns)
    query = select(_usage.c.account_id, _usage.c.hour, _usage.c.amount).where(
        _usage.c.hour >= first, _usage.c.hour <= last, _usage.c.payee_account_id == TOTAL_PAYEE
    )
    limits = select(_budgets.c.account_id, _budgets.c.daily_limit, _accounts.c.ledger).join(
        _accounts, _accounts.c.id == _budgets.c.account_id
    )
    if account_id is not None:
        query = query.where(_usage.c.account_id == account_id)
        limits = limits.where(_budgets.c.account_id == account_id)
    total, ledgers, limited = 0, set(), set()
    for row in session.execute(limits):
        ledgers.add(row.ledger)
        if row.daily_limit is not None:
            total += row.daily_limit
            limited.add(row.account_id)
    per_hour: dict[int, int] = defaultdict(int)
    spent = 0
    for row in session.execute(query):
        spent += int(row.amount)
        if row.account_id in limited:
            per_hour[row.hour] += int(row.amount)
    used, running = [], 0
    for hour in range(first, last + 1):
        running += per_hour.get(hour, 0)
        used.append(running)
    ledger = ledgers.pop() if len(ledgers) == 1 else None
    return BurnDown(start, total, tuple(used), ledger, bool(limited), spent)


# A payment made or received, whatever its scheme: exact's payment and
# revenue, an upto payment, a channel's charge (the agent's) and earning (the
# merchant's).
_PAYMENT_CODES: Final = (
    int(TransferCode.PAYMENT),
    int(TransferCode.REVENUE),
    int(UPTO_PAYMENT),
    int(AgentChannelCode.CHANNEL_CHARGE),
    int(MerchantChannelCode.EARNED),
)


def payments_per_minute(session: Session, now_ns: int, *, minutes: int = 60) -> list[int]:
    """Settled payments (spend and revenue) in each of the last ``minutes`` minutes, oldest first."""
    end_minute = now_ns // NS_PER_MINUTE
    since = (end_minute - minutes + 1) * NS_PER_MINUTE
    t = _transfers
    query = select(t.c.timestamp_ns).where(
        t.c.timestamp_ns >= since,
        t.c.code.in_(_PAYMENT_CODES),
        t.c.flags.op("&")(int(NOT_POSTED_FLAGS)) == 0,
    )
    counts = [0] * minutes
    for (timestamp,) in session.execute(query):
        index = timestamp // NS_PER_MINUTE - (end_minute - minutes + 1)
        if 0 <= index < minutes:
            counts[index] += 1
    return counts


@dataclass(frozen=True, slots=True)
class RevenueLine:
    site: str
    resource: str
    ledger: int | None
    amount: int
    payment_count: int


def _site(resource: str) -> str:
    parts = urlsplit(resource)
    return parts.netloc or "-"


def revenue_by_resource(session: Session, since_ns: int) -> list[RevenueLine]:
    """Posted revenue per resource since ``since_ns``, from the merchant's books."""
    t = _transfers
    query = (
        select(t.c.resource, t.c.ledger, t.c.amount)
        .where(t.c.timestamp_ns >= since_ns, t.c.code == int(TransferCode.REVENUE))
        .where(t.c.flags.op("&")(int(NOT_POSTED_FLAGS)) == 0)
    )
    return _group(
        (row.resource or "-", row.ledger, int(row.amount)) for row in session.execute(query)
    )


def _group(items: Any) -> list[RevenueLine]:
    totals: dict[tuple[str, int | None], list[int]] = {}
    for resource, ledger, amount in items:
        bucket = totals.setdefault((resource, ledger), [0, 0])
        bucket[0] += amount
        bucket[1] += 1
    lines = [
        RevenueLine(_site(resource), resource, ledger, amount, count)
        for (resource, ledger), (amount, count) in totals.items()
    ]
    lines.sort(key=lambda r: (r.site, -r.amount, r.resource))
    return lines


def paywall_revenue(engine: Engine, since_ns: int) -> list[RevenueLine]:
    """Settled payments per resource in the paywall's own payment store."""
    from sqlalchemy import BigInteger, Column, MetaData, String, Table

    # Only the columns read here: the store's other columns are its business.
    payments = Table(
        "paywall_payment",
        MetaData(),
        Column("state", String(16)),
        Column("amount", String(78)),
        Column("resource", String(2048)),
        Column("updated_at_ns", BigInteger),
    )
    query = select(payments.c.resource, payments.c.amount).where(
        payments.c.state == "settled", payments.c.updated_at_ns >= since_ns
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _group((row.resource, None, int(row.amount)) for row in rows)


def revenue_listing(
    lines: list[RevenueLine], money: dict[int, Money], name: str, title: str
) -> Listing:
    fallback = next(iter(money.values()), Money())
    rows = [
        {
            "site": line.site,
            "resource": line.resource,
            "revenue": (
                money.get(line.ledger, fallback) if line.ledger is not None else fallback
            ).format(line.amount),
            "payments": str(line.payment_count),
            "revenue_atomic": str(line.amount),
        }
        for line in lines
    ]
    return Listing(name, title, ("site", "resource", "revenue", "payments", "revenue_atomic"),
                   rows, ("revenue_atomic",))  # fmt: skip
