"""One agent's page: its payments, its limits and what is left of each, its open reservations.

Its channels (``farthing.dashboard.channels``) are added by the app.

A payment is the pending transfer that reserved it (its id is the payment
id) together with whatever resolved it: the post that settled it (with the
on-chain transaction), the void or the expiry. Single-phase transfers out of
the budget are payments too. Each query reads one agent's rows through the
``(debit_account_id, timestamp_ns)`` index and is bounded by ``limit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farthing.agents.tables import agent_policy, agent_task
from farthing.dashboard.listing import Listing, Money
from farthing.dashboard.overview import AgentSpend, agent_spend
from farthing.dashboard.present import utc_time
from farthing.ledger.flags import RESOLVING_FLAGS, TransferFlags
from farthing.ledger.ids import format_transfer_id
from farthing.ledger.report import transfer_kind
from farthing.ledger.tables import Budget, PendingTransfer, Transfer, table_of

__all__ = ["AgentPage", "agent_page"]

_transfers = table_of(Transfer)
_pending = table_of(PendingTransfer)
_budgets = table_of(Budget)


_NO_CHANNELS = Listing("channels", "Channels and their deposits", ())
_NO_CHANNEL_TRANSACTIONS = Listing(
    "channel_transactions", "Channel deposits and refunds on chain", ()
)


@dataclass(frozen=True, slots=True)
class AgentPage:
    agent_id: str
    spend: AgentSpend
    money: Money
    payments: Listing
    limits: Listing
    unresolved: Listing
    unresolved_total: int
    tasks: Listing
    # Filled by ``farthing.dashboard.channels`` after this page's session closes.
    channels: Listing = _NO_CHANNELS
    channel_transactions: Listing = _NO_CHANNEL_TRANSACTIONS
    in_escrow_total: int = 0


def _state(row: Any, resolution: Any) -> str:
    if not row.flags & TransferFlags.PENDING:
        return "posted"
    if resolution is None:
        return "pending"
    kind: str = transfer_kind(int(resolution.flags))
    return kind


def agent_page(
    session: Session, *, agent_id: str, now_ns: int, money: dict[int, Money], limit: int
) -> AgentPage | None:
    """Everything the agent page shows, or None for an agent the books do not know."""
    budget = session.execute(
        select(_budgets.c.account_id).where(_budgets.c.agent_id == agent_id)
    ).first()
    if budget is None:
        return None
    account_id = budget.account_id
    (spend,) = agent_spend(session, now_ns, account_id=account_id)
    m = money.get(spend.ledger, Money())
    t = _transfers
    payments_query = (
        select(t)
        .where(t.c.debit_account_id == account_id)
        .where(t.c.flags.op("&")(int(RESOLVING_FLAGS)) == 0)
        .order_by(t.c.timestamp_ns.desc())
        .limit(limit)
    )
    rows = session.execute(payments_query).all()
    pending_ids = [r.id for r in rows if r.flags & TransferFlags.PENDING]
    resolutions: dict[int, Any] = {}
    if pending_ids:
        for r in session.execute(select(t).where(t.c.pending_id.in_(pending_ids))):
            resolutions[r.pending_id] = r
    payment_rows = []
    for row in rows:
        resolution = resolutions.get(row.id)
        tx = (resolution.tx_hash if resolution is not None else None) or row.tx_hash
        payment_rows.append(
            {
                "payment_id": format_transfer_id(row.id),
                "task": row.task_id or "-",
                "purpose": row.purpose or "-",
                "payee": row.payee_address or "-",
                "resource": row.resource or "-",
                "amount": m.format(row.amount),
                "state": _state(row, resolution),
                "transaction": tx or "-",
                "amount_atomic": str(row.amount),
                "timestamp_ns": str(row.timestamp_ns),
            }
        )
    payments = Listing(
        "payments", f"Latest {limit} payments",
        ("payment_id", "task", "purpose", "payee", "resource", "amount", "state", "transaction",
         "amount_atomic", "timestamp_ns"),
        payment_rows, ("amount_atomic", "timestamp_ns", "resource"),
    )  # fmt: skip

    open_query = (
        select(t.c.id, t.c.amount, t.c.payee_address, t.c.task_id, t.c.valid_before, t.c.resource)
        .join(_pending, _pending.c.transfer_id == t.c.id)
        .where(t.c.debit_account_id == account_id)
        .order_by(t.c.timestamp_ns)
    )
    open_rows = session.execute(open_query.limit(limit)).all()
    open_total = session.execute(
        select(func.coalesce(func.sum(t.c.amount), 0))
        .join(_pending, _pending.c.transfer_id == t.c.id)
        .where(t.c.debit_account_id == account_id)
    ).scalar_one()
    unresolved = Listing(
        "unresolved", "Possible spend still unresolved (open reservations)",
        ("payment_id", "task", "payee", "resource", "amount", "valid_before", "amount_atomic",
         "valid_before_s"),
        [
            {
                "payment_id": format_transfer_id(r.id), "task": r.task_id or "-",
                "payee": r.payee_address or "-",
                "resource": r.resource or "-", "amount": m.format(r.amount),
                "valid_before": utc_time(r.valid_before),
                "amount_atomic": str(r.amount),
                "valid_before_s": "" if r.valid_before is None else str(r.valid_before),
            }
            for r in open_rows
        ],
        ("amount_atomic", "valid_before_s"),
    )  # fmt: skip

    limits = _limits(session, agent_id, spend, m)
    task_rows = []
    tasks = session.execute(
        select(agent_task).where(agent_task.c.agent_id == agent_id)
        .order_by(agent_task.c.created_ns.desc()).limit(limit)
    ).all()  # fmt: skip
    for task in tasks:
        used = session.execute(
            select(t.c.amount, t.c.flags, t.c.id)
            .where(t.c.debit_account_id == account_id, t.c.task_id == task.task_id)
        ).all()  # fmt: skip
        spent = _task_spend(session, used)
        task_rows.append(
            {
                "task": task.task_id, "text": task.text or "-", "budget": m.format(task.budget),
                "spent": m.format(spent), "left": m.format(max(0, task.budget - spent)),
                "budget_atomic": str(task.budget), "spent_atomic": str(spent),
            }
        )  # fmt: skip
    task_listing = Listing(
        "tasks", "Tasks and their budgets",
        ("task", "text", "budget", "spent", "left", "budget_atomic", "spent_atomic"),
        task_rows, ("budget_atomic", "spent_atomic"),
    )  # fmt: skip
    return AgentPage(
        agent_id, spend, m, payments, limits, unresolved, int(open_total), task_listing
    )


def _task_spend(session: Session, rows: Sequence[Any]) -> int:
    """Posted plus still-reserved spend of a task's transfers (resolutions counted once)."""
    total = 0
    pending = [r for r in rows if r.flags & TransferFlags.PENDING]
    settled_or_open: set[int] = set()
    if pending:
        ids = [r.id for r in pending]
        closed = {
            r.pending_id: r.flags
            for r in session.execute(
                select(_transfers.c.pending_id, _transfers.c.flags).where(
                    _transfers.c.pending_id.in_(ids)
                )
            )
        }
        for r in pending:
            flags = closed.get(r.id)
            if flags is None or flags & TransferFlags.POST_PENDING_TRANSFER:
                settled_or_open.add(r.id)
                total += r.amount
    for r in rows:
        if not r.flags & (TransferFlags.PENDING | RESOLVING_FLAGS):
            total += r.amount
    return total


def _limits(session: Session, agent_id: str, spend: AgentSpend, m: Money) -> Listing:
    policy = session.execute(
        select(_budgets.c.payment_cap, _budgets.c.daily_limit, _budgets.c.payee_daily_cap)
        .where(_budgets.c.agent_id == agent_id)
    ).first()  # fmt: skip
    extra = session.execute(
        select(agent_policy.c.total_budget, agent_policy.c.approval_above)
        .where(agent_policy.c.agent_id == agent_id)
    ).first()  # fmt: skip
    rows: list[dict[str, str]] = []

    def add(name: str, limit: int | None, used: int | None, note: str) -> None:
        left = None if limit is None or used is None else max(0, limit - used)
        rows.append(
            {
                "limit": name, "value": "none" if limit is None else m.format(limit),
                "used": "-" if used is None else m.format(used),
                "left": "-" if left is None else m.format(left), "note": note,
                "value_atomic": "" if limit is None else str(limit),
                "left_atomic": "" if left is None else str(left),
            }
        )  # fmt: skip

    add(
        "funds booked",
        spend.funded,
        spend.spent + spend.reserved,
        "deposits less spend and reservations",
    )
    if policy is not None:
        add("daily limit", policy.daily_limit, spend.daily_used, "rolling 24 h, reservations count")
        add("payment cap", policy.payment_cap, None, "the most one payment may be")
        add("per-payee daily cap", policy.payee_daily_cap, None, "per payee, rolling 24 h")
    if extra is not None:
        add("total budget", extra.total_budget, spend.spent + spend.reserved, "lifetime spend")
        add("approval above", extra.approval_above, None, "larger payments wait for a person")
    return Listing("limits", "Limits and what is left", ("limit", "value", "used", "left", "note",
                   "value_atomic", "left_atomic"), rows, ("value_atomic", "left_atomic"))  # fmt: skip
