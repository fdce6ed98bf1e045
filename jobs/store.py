"""Reading and moving job rows: snapshots, ids, and the conditional update.

:class:`JobView` is an immutable snapshot of a row, with its JSON columns
parsed. :func:`move` is the only way a row changes: one UPDATE conditional on
the version the caller read (and the state machine's edge checked), in the
caller's database transaction, so the ledger transfers booked beside it
commit or roll back together with it. A lost race is :class:`StaleJob`, which
the service turns into the ``job_changed_concurrently`` refusal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from farthing.jobs.errors import JobNotFound
from farthing.jobs.states import JobState, check_move
from farthing.jobs.tables import Job
from farthing.ledger import derived_id as ledger_derived_id
from farthing.ledger.ids import format_transfer_id
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo

__all__ = [
    "JobView",
    "StaleJob",
    "capture_id",
    "hold_id",
    "insert_job",
    "list_jobs",
    "load",
    "move",
    "refund_id",
]

_NAMESPACE: Final = b"farthing.jobs:"
_table = Job.__table__  # type: ignore[attr-defined]


# What a new row starts with, besides its terms.
_NEW_ROW: Final[dict[str, Any]] = {
    "version": 0,
    "hold_seq": 0,
    "refund_seq": 0,
    "held": 0,
    "held_unbooked": 0,
    "captured": 0,
    "refunded": 0,
    "capture_txs": "[]",
    "refund_txs": "[]",
}


class StaleJob(Exception):
    """Another process moved the job since it was read; never leaves the service."""


def _ledger_id(agent_id: str, job_id: int, kind: str, seq: int) -> int:
    return ledger_derived_id(
        _NAMESPACE, "\x1f".join([agent_id, str(job_id), kind, str(seq)]).encode()
    )


def hold_id(agent_id: str, job_id: int, seq: int) -> int:
    """The ledger id of a job's ``seq``-th hold (a pending transfer)."""
    return _ledger_id(agent_id, job_id, "hold", seq)


def capture_id(agent_id: str, job_id: int, seq: int) -> int:
    """The ledger id of a capture booked without a hold (only when the hold could not be booked)."""
    return _ledger_id(agent_id, job_id, "capture", seq)


def refund_id(agent_id: str, job_id: int, seq: int) -> int:
    """The ledger id of a job's ``seq``-th refund (a correcting transfer)."""
    return _ledger_id(agent_id, job_id, "refund", seq)


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as read: terms, parties, delivery, review and escrow facts (amounts are ints)."""

    id: int
    agent_id: str
    title: str
    specification: str
    criteria: str
    price_amount: int
    currency: str
    currency_decimals: int
    rate: str
    amount: int
    network: str
    token: str
    deadline: int
    state: JobState
    version: int
    worker: str | None
    delivery_kind: str | None
    delivery: str | None
    review: dict[str, Any] | None
    approval_id: int | None
    payment_info: PaymentInfo | None
    payment_hash: str | None
    hold_transfer_id: int | None
    hold_seq: int
    refund_seq: int
    held: int
    held_unbooked: int
    captured: int
    refunded: int
    authorize_tx: str | None
    authorize_block: int | None
    capture_txs: tuple[str, ...]
    void_tx: str | None
    refund_txs: tuple[str, ...]
    reclaim_tx: str | None
    note: str | None
    created_ns: int
    updated_ns: int

    @classmethod
    def from_row(cls, row: Any) -> JobView:
        m = row._mapping if hasattr(row, "_mapping") else row
        info = m["payment_info"]
        hold = m["hold_transfer_id"]
        return cls(
            id=int(m["id"]),
            agent_id=m["agent_id"],
            title=m["title"],
            specification=m["specification"],
            criteria=m["criteria"],
            price_amount=int(m["price_amount"]),
            currency=m["currency"],
            currency_decimals=int(m["currency_decimals"]),
            rate=m["rate"],
            amount=int(m["amount"]),
            network=m["network"],
            token=m["token"],
            deadline=int(m["deadline"]),
            state=JobState(m["state"]),
            version=int(m["version"]),
            worker=m["worker"],
            delivery_kind=m["delivery_kind"],
            delivery=m["delivery"],
            review=None if m["review"] is None else json.loads(m["review"]),
            approval_id=None if m["approval_id"] is None else int(m["approval_id"]),
            payment_info=None if info is None else PaymentInfo.from_wire(json.loads(info)),
            payment_hash=m["payment_hash"],
            hold_transfer_id=None if hold is None else int(hold, 16),
            hold_seq=int(m["hold_seq"]),
            refund_seq=int(m["refund_seq"]),
            held=int(m["held"]),
            held_unbooked=int(m["held_unbooked"]),
            captured=int(m["captured"]),
            refunded=int(m["refunded"]),
            authorize_tx=m["authorize_tx"],
            authorize_block=m["authorize_block"],
            capture_txs=tuple(json.loads(m["capture_txs"])),
            void_tx=m["void_tx"],
            refund_txs=tuple(json.loads(m["refund_txs"])),
            reclaim_tx=m["reclaim_tx"],
            note=m["note"],
            created_ns=int(m["created_ns"]),
            updated_ns=int(m["updated_ns"]),
        )

    @property
    def refundable(self) -> int:
        return self.captured - self.refunded

    def to_json(self) -> dict[str, Any]:
        """The job for ``--json``: amounts and ids as decimal strings, never floats."""
        return {
            "id": self.id,
            "agentId": self.agent_id,
            "title": self.title,
            "specification": self.specification,
            "criteria": self.criteria,
            "price": {
                "amount": str(self.price_amount),
                "currency": self.currency,
                "decimals": self.currency_decimals,
            },
            "rate": self.rate,
            "amount": str(self.amount),
            "network": self.network,
            "token": self.token,
            "deadline": self.deadline,
            "state": str(self.state),
            "worker": self.worker,
            "delivery": None
            if self.delivery is None
            else {"kind": self.delivery_kind, "content": self.delivery},
            "review": self.review,
            "approvalId": self.approval_id,
            "paymentHash": self.payment_hash,
            "paymentInfo": None if self.payment_info is None else self.payment_info.to_wire(),
            "held": str(self.held),
            "captured": str(self.captured),
            "refunded": str(self.refunded),
            "holdTransferId": None
            if self.hold_transfer_id is None
            else format_transfer_id(self.hold_transfer_id),
            "authorizeTx": self.authorize_tx,
            "captureTxs": list(self.capture_txs),
            "voidTx": self.void_tx,
            "refundTxs": list(self.refund_txs),
            "reclaimTx": self.reclaim_tx,
            "note": self.note,
        }


def load(session: Session, job_id: int) -> JobView:
    row = session.execute(select(_table).where(_table.c.id == job_id)).first()
    if row is None:
        raise JobNotFound(f"there is no job {job_id}")
    return JobView.from_row(row)


def list_jobs(
    session: Session,
    *,
    agent_id: str | None = None,
    state: str | None = None,
    worker: str | None = None,
    limit: int = 100,
) -> list[JobView]:
    """Jobs newest first; ``worker`` is a checksummed address (as ``accept`` stores it)."""
    query = select(_table)
    if agent_id is not None:
        query = query.where(_table.c.agent_id == agent_id)
    if worker is not None:
        query = query.where(_table.c.worker == worker)
    if state is not None:
        query = query.where(_table.c.state == state)
    rows = session.execute(query.order_by(_table.c.id.desc()).limit(max(1, min(limit, 1_000))))
    return [JobView.from_row(row) for row in rows]


def insert_job(session: Session, values: dict[str, Any]) -> int:
    now = time.time_ns()
    row = {**_NEW_ROW, **values, "created_ns": now, "updated_ns": now}
    result = session.execute(_table.insert().values(**row).returning(_table.c.id))
    return int(result.scalar_one())


def move(session: Session, job: JobView, **changes: Any) -> None:
    """Write ``changes`` to ``job`` if nobody moved it since it was read; else raise ``StaleJob``.

    A ``state`` change must be an edge of the state machine (``JobStateError``
    otherwise). JSON columns and ledger ids are encoded here.
    """
    values = dict(changes)
    if "state" in values:
        values["state"] = str(check_move(job.state, values["state"]))
    for name in ("capture_txs", "refund_txs"):
        if name in values:
            values[name] = json.dumps(list(values[name]))
    for name in ("review",):
        if name in values and values[name] is not None:
            values[name] = json.dumps(values[name], sort_keys=True)
    if "payment_info" in values and isinstance(values["payment_info"], PaymentInfo):
        values["payment_info"] = json.dumps(values["payment_info"].to_wire(), sort_keys=True)
    if "hold_transfer_id" in values and values["hold_transfer_id"] is not None:
        values["hold_transfer_id"] = format(values["hold_transfer_id"], "032x")
    result = session.execute(
        update(_table)
        .where(_table.c.id == job.id, _table.c.version == job.version)
        .values(**values, version=job.version + 1, updated_ns=time.time_ns())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleJob(job.id)
