"""Human approval for payments above a threshold: a request row, a decision, a bounded wait.

When a payment is above the policy's ``approval_above``, the paying client
writes a *pending* request to ``agent_approval`` (amount, payee, resource,
task and purpose) and waits, at most ``approval_timeout_s``, for a person to
run ``farthing agent approvals approve ID`` or ``deny ID``. Only ``approved``
lets the payment go ahead, and only that payment: the request names its exact
terms and is used once. A request nobody decides in time is marked
``expired`` and the payment is not made.

Every status change is one conditional UPDATE (``WHERE status = 'pending'``),
so a decision and an expiry racing each other cannot both win, in any number
of processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import CursorResult, insert, select, update

from farthing.agents.errors import ApprovalError
from farthing.agents.tables import agent_approval, ensure_tables
from farthing.ledger import LedgerDatabase
from farthing.wallet.money import Asset, format_amount

__all__ = [
    "POLL_S_DEFAULT",
    "Approval",
    "ApprovalStatus",
    "decide_approval",
    "get_approval",
    "list_approvals",
    "request_approval",
    "wait_for_decision",
]

POLL_S_DEFAULT: Final = 0.2
_LIST_LIMIT_MAX: Final = 1_000
_NOTE_MAX: Final = 500

ApprovalStatus = Literal["pending", "approved", "denied", "expired"]


@dataclass(frozen=True, slots=True)
class Approval:
    """One payment waiting for (or decided by) a person."""

    id: int
    agent_id: str
    task_id: str | None
    purpose: str | None
    resource: str
    pay_to: str
    network: str
    token: str
    amount: int
    decimals: int
    symbol: str
    status: ApprovalStatus
    note: str | None
    created_ns: int
    decided_ns: int | None

    def price(self) -> str:
        return f"{format_amount(self.amount, self.decimals)} {self.symbol}"


def request_approval(
    database: LedgerDatabase,
    *,
    agent_id: str,
    asset: Asset,
    amount: int,
    pay_to: str,
    resource: str,
    task_id: str | None = None,
    purpose: str | None = None,
) -> Approval:
    """Write a pending approval request and return it."""
    ensure_tables(database)
    values = {
        "agent_id": agent_id,
        "task_id": task_id,
        "purpose": (purpose or "")[:2048] or None,
        "resource": resource[:2048],
        "pay_to": pay_to,
        "network": asset.network,
        "token": asset.address,
        "amount": amount,
        "decimals": asset.decimals,
        "symbol": asset.symbol,
        "status": "pending",
        "note": None,
        "created_ns": time.time_ns(),
        "decided_ns": None,
    }
    with database.write() as session:
        inserted = insert(agent_approval).values(values).returning(agent_approval.c.id)
        approval_id = int(session.execute(inserted).scalar_one())
    return _approval({"id": approval_id, **values})


def get_approval(database: LedgerDatabase, approval_id: int) -> Approval | None:
    ensure_tables(database)
    with database.read() as session:
        row = session.execute(
            select(agent_approval).where(agent_approval.c.id == approval_id)
        ).first()
    return None if row is None else _approval(row._mapping)


def list_approvals(
    database: LedgerDatabase,
    *,
    status: ApprovalStatus | None = None,
    agent_id: str | None = None,
    limit: int = 100,
) -> list[Approval]:
    """Requests, newest first; ``status="pending"`` is what waits for a person."""
    ensure_tables(database)
    query = select(agent_approval)
    if status is not None:
        query = query.where(agent_approval.c.status == status)
    if agent_id is not None:
        query = query.where(agent_approval.c.agent_id == agent_id)
    bounded = max(1, min(limit, _LIST_LIMIT_MAX))
    with database.read() as session:
        rows = session.execute(query.order_by(agent_approval.c.id.desc()).limit(bounded))
        return [_approval(row._mapping) for row in rows]


def decide_approval(
    database: LedgerDatabase, approval_id: int, *, approve: bool, note: str | None = None
) -> Approval:
    """Approve or deny a pending request; an unknown or already-decided one raises ``ApprovalError``."""
    ensure_tables(database)
    status: ApprovalStatus = "approved" if approve else "denied"
    if not _move(database, approval_id, status, note):
        current = get_approval(database, approval_id)
        if current is None:
            raise ApprovalError(f"there is no approval request {approval_id}")
        raise ApprovalError(f"approval request {approval_id} is already {current.status}")
    decided = get_approval(database, approval_id)
    if decided is None:  # rows are never deleted
        raise ApprovalError(f"approval request {approval_id} disappeared")
    return decided


def wait_for_decision(
    database: LedgerDatabase,
    approval_id: int,
    *,
    timeout_s: float,
    poll_s: float = POLL_S_DEFAULT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
) -> Approval:
    """Wait until the request is decided, or mark it ``expired`` after ``timeout_s``."""
    deadline = clock() + timeout_s
    while True:
        current = get_approval(database, approval_id)
        if current is None:
            raise ApprovalError(f"there is no approval request {approval_id}")
        if current.status != "pending":
            return current
        if clock() >= deadline:
            # If a person decided in the meantime, their decision stands.
            _move(database, approval_id, "expired", "nobody decided in time")
            expired = get_approval(database, approval_id)
            if expired is None:
                raise ApprovalError(f"approval request {approval_id} disappeared")
            return expired
        sleep(min(poll_s, max(0.0, deadline - clock())))


def _move(
    database: LedgerDatabase, approval_id: int, status: ApprovalStatus, note: str | None
) -> bool:
    with database.write() as session:
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(agent_approval)
            .where(agent_approval.c.id == approval_id, agent_approval.c.status == "pending")
            .values(status=status, note=(note or "")[:_NOTE_MAX] or None, decided_ns=time.time_ns())
        )
        return bool(result.rowcount)


def _approval(row: Any) -> Approval:
    return Approval(
        id=int(row["id"]),
        agent_id=row["agent_id"],
        task_id=row["task_id"],
        purpose=row["purpose"],
        resource=row["resource"],
        pay_to=row["pay_to"],
        network=row["network"],
        token=row["token"],
        amount=int(row["amount"]),
        decimals=int(row["decimals"]),
        symbol=row["symbol"],
        status=row["status"],
        note=row["note"],
        created_ns=int(row["created_ns"]),
        decided_ns=None if row["decided_ns"] is None else int(row["decided_ns"]),
    )
