"""What people do in the dashboard, each written to the ledger's audit log with who did it.

An action is appended to the same hash-chained log as the books
(``farthing.ledger.audit``), as an entry of kind ``operator_<action>`` whose
payload names the actor, so ``farthing ledger verify`` covers it and nobody
can quietly remove it. Approvals are decided by the very function
``farthing agent approvals approve|deny`` calls, so an agent waiting on the
request proceeds (or refuses) at its next poll.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from farthing.agents.approvals import Approval, decide_approval
from farthing.agents.errors import ApprovalError
from farthing.ledger import audit
from farthing.ledger.database import LedgerDatabase

__all__ = ["ACTION_PREFIX", "Decision", "decide", "record_action"]

ACTION_PREFIX = "operator_"


def record_action(
    database: LedgerDatabase,
    *,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, str | int | None],
) -> None:
    """Append ``operator_<action>`` by ``actor`` about ``subject`` to the audit log."""
    payload: dict[str, str | int | None] = {"actor": actor, **details}
    with database.write() as session:
        head = audit.lock_head(session)
        audit.append(
            session, head, [(ACTION_PREFIX + action, subject, payload)], timestamp_ns=time.time_ns()
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The request after the decision, or why it could not be decided."""

    approval: Approval | None
    reason: str | None  # e.g. "approval request 7 is already approved"


def decide(
    database: LedgerDatabase, approval_id: int, *, approve: bool, note: str | None, actor: str
) -> Decision:
    """Approve or deny one request as the CLI does, and log who did it and what came of it."""
    verb = "approve" if approve else "deny"
    try:
        decided = decide_approval(database, approval_id, approve=approve, note=note or None)
    except ApprovalError as exc:
        record_action(
            database,
            actor=actor,
            action=f"{verb}_refused",
            subject=f"approval:{approval_id}",
            details={"reason": str(exc)},
        )
        return Decision(None, str(exc))
    record_action(
        database,
        actor=actor,
        action="approved" if approve else "denied",
        subject=f"approval:{approval_id}",
        details={
            "agent_id": decided.agent_id,
            "amount": decided.amount,
            "pay_to": decided.pay_to,
            "resource": decided.resource,
            "note": decided.note,
        },
    )
    return Decision(decided, None)
