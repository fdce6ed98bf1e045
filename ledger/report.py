"""Reports over the books: spend, budget use, merchant revenue, and export.

Spend is what agents paid out of their budget accounts (those with a
``Budget`` policy): *posted* counts settled payments and single-phase
transfers, *reserved* counts reservations still pending. Revenue is the
merchant's view: settled payments whose payee is the merchant's address.
Amounts are ints in atomic units; ``format_amount`` renders them for people.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from farthing.ledger.budget import TOTAL_PAYEE, hour_of, window_sum
from farthing.ledger.flags import TransferFlags
from farthing.ledger.ids import format_transfer_id
from farthing.ledger.tables import (
    Account,
    Asset,
    Budget,
    BudgetUsage,
    PendingTransfer,
    Transfer,
    table_of,
)
from farthing.wallet.money import format_amount as wallet_format_amount

__all__ = [
    "BudgetRow",
    "RevenueRow",
    "SpendDimension",
    "SpendRow",
    "budget_report",
    "export_rows",
    "format_amount",
    "ledger_decimals",
    "revenue_report",
    "spend_report",
    "transfer_kind",
]

SpendDimension = Literal["agent", "payee", "resource", "day"]
_transfers = table_of(Transfer)
_pending = table_of(PendingTransfer)
_budgets = table_of(Budget)
_accounts = table_of(Account)
_usage = table_of(BudgetUsage)
_assets = table_of(Asset)
_ID_COLUMNS = frozenset({"id", "pending_id", "debit_account_id", "credit_account_id"})


def transfer_kind(flags: int) -> str:
    """``created``, ``pending``, ``posted``, ``voided`` or ``expired``."""
    if flags & TransferFlags.PENDING:
        return "pending"
    if flags & TransferFlags.POST_PENDING_TRANSFER:
        return "posted"
    if flags & TransferFlags.VOID_PENDING_TRANSFER:
        return "voided"
    if flags & TransferFlags.EXPIRE_PENDING_TRANSFER:
        return "expired"
    return "created"


def format_amount(amount: int, decimals: int | None) -> str:
    """``1234500`` with 6 decimals is ``"1.2345"``; unknown decimals stay atomic."""
    if decimals is None:
        return str(amount)
    return wallet_format_amount(amount, decimals)


def ledger_decimals(*, session: Session) -> dict[int, tuple[int, str]]:
    """Each ledger's (decimals, symbol), taken from its first registered asset."""
    found: dict[int, tuple[int, str]] = {}
    for row in session.execute(select(_assets).order_by(_assets.c.id)):
        found.setdefault(row.ledger, (row.decimals, row.symbol))
    return found


def _day(timestamp_ns: int) -> str:
    return dt.datetime.fromtimestamp(timestamp_ns // 1_000_000_000, dt.UTC).date().isoformat()


def _window(query: Any, since_ns: int | None, until_ns: int | None) -> Any:
    if since_ns is not None:
        query = query.where(_transfers.c.timestamp_ns >= since_ns)
    if until_ns is not None:
        query = query.where(_transfers.c.timestamp_ns < until_ns)
    return query


@dataclass(frozen=True, slots=True)
class SpendRow:
    by: str
    key: str
    ledger: int
    posted: int
    reserved: int
    payment_count: int


def spend_report(
    *,
    session: Session,
    by: SpendDimension,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[SpendRow]:
    """Spend from budget accounts grouped by agent, payee, resource or UTC day."""
    t = _transfers
    query = select(
        t.c.flags,
        t.c.amount,
        t.c.ledger,
        t.c.timestamp_ns,
        t.c.credit_account_id,
        t.c.payee_address,
        t.c.resource,
        _budgets.c.agent_id,
        t.c.id.in_(select(_pending.c.transfer_id)).label("is_open"),
    ).join(_budgets, _budgets.c.account_id == t.c.debit_account_id)
    totals: dict[tuple[str, int], list[int]] = {}
    for row in session.execute(_window(query, since_ns, until_ns)):
        kind = transfer_kind(row.flags)
        if kind in ("posted", "created"):
            posted, reserved = row.amount, 0
        elif kind == "pending" and row.is_open:
            posted, reserved = 0, row.amount
        else:
            continue  # resolved reservations are counted by their post
        if by == "agent":
            key = row.agent_id
        elif by == "payee":
            key = row.payee_address or f"account:{row.credit_account_id}"
        elif by == "resource":
            key = row.resource or "-"
        else:
            key = _day(row.timestamp_ns)
        bucket = totals.setdefault((key, row.ledger), [0, 0, 0])
        bucket[0] += posted
        bucket[1] += reserved
        bucket[2] += 1
    return [
        SpendRow(by, key, ledger, posted, reserved, count)
        for (key, ledger), (posted, reserved, count) in sorted(totals.items())
    ]


@dataclass(frozen=True, slots=True)
class BudgetRow:
    agent_id: str
    account_id: int
    ledger: int
    funded: int
    spent: int
    reserved: int
    remaining: int
    payment_cap: int | None
    daily_limit: int | None
    daily_used: int
    payee_daily_cap: int | None


def budget_report(*, session: Session, now_ns: int) -> list[BudgetRow]:
    """Each budget's funding, spend, reservations and rolling daily use."""
    hour = hour_of(now_ns)
    usage: dict[int, dict[tuple[int, int], int]] = {}
    for row in session.execute(select(_usage).where(_usage.c.hour >= hour - 25)):
        usage.setdefault(row.account_id, {})[(row.payee_account_id, row.hour)] = row.amount
    query = select(_budgets, _accounts).join(_accounts, _accounts.c.id == _budgets.c.account_id)
    rows = []
    for row in session.execute(query.order_by(_budgets.c.agent_id)):
        rows.append(
            BudgetRow(
                agent_id=row.agent_id,
                account_id=row.account_id,
                ledger=row.ledger,
                funded=row.credits_posted,
                spent=row.debits_posted,
                reserved=row.debits_pending,
                remaining=row.credits_posted - row.debits_posted - row.debits_pending,
                payment_cap=row.payment_cap,
                daily_limit=row.daily_limit,
                daily_used=window_sum(usage.get(row.account_id, {}), TOTAL_PAYEE, hour),
                payee_daily_cap=row.payee_daily_cap,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class RevenueRow:
    payee_address: str
    resource: str
    ledger: int
    posted: int
    payment_count: int


def revenue_report(
    *,
    session: Session,
    payee_address: str,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[RevenueRow]:
    """A merchant's settled revenue per resource."""
    t = _transfers
    payee = payee_address.lower()
    query = select(t.c.flags, t.c.amount, t.c.ledger, t.c.resource).where(
        t.c.payee_address == payee
    )
    totals: dict[tuple[str, int], list[int]] = {}
    for row in session.execute(_window(query, since_ns, until_ns)):
        if transfer_kind(row.flags) not in ("posted", "created"):
            continue
        bucket = totals.setdefault((row.resource or "-", row.ledger), [0, 0])
        bucket[0] += row.amount
        bucket[1] += 1
    return [
        RevenueRow(payee, resource, ledger, posted, count)
        for (resource, ledger), (posted, count) in sorted(totals.items())
    ]


def export_rows(
    *, session: Session, since_ns: int | None = None, until_ns: int | None = None
) -> Iterator[dict[str, str | None]]:
    """Every transfer in time order, each value a string (or None) for CSV and JSON.

    Transfer and account ids are written the one way
    (``farthing.ledger.ids.format_transfer_id``: 32 hex digits), as every
    command and page writes them; amounts are decimal strings, as on the
    wire, never JSON numbers.
    """
    query = _window(select(_transfers), since_ns, until_ns).order_by(
        _transfers.c.timestamp_ns, _transfers.c.id
    )
    for row in session.execute(query.execution_options(yield_per=2_000)):
        data = dict(row._mapping)
        out: dict[str, str | None] = {"kind": transfer_kind(data["flags"])}
        for name, value in data.items():
            if value is None:
                out[name] = None
            elif name in _ID_COLUMNS:
                out[name] = format_transfer_id(value)
            else:
                out[name] = str(value)
        yield out
