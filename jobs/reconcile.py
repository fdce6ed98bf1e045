"""Reconciliation for jobs: the escrow's events against the job rows and the agent's books.

For every job with an escrow payment, the escrow's events for its payment
hash are added up (authorized, captured, voided, reclaimed, refunded) and
compared, in ints, with

* the job's row: what it says is held, captured and refunded, and the
  transactions it recorded;
* the books: the open hold (a pending transfer) must equal what the escrow
  still holds, the posted captures what it paid out, and the refunds (correcting
  transfers) what it returned;
* the escrow's own ``paymentState``.

Each disagreement is a :class:`JobBreak` with a snake_case ``kind``. The
happy paths leave none; a process that died between a chain call and its
booking leaves one that names the job and the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from farthing.jobs.store import JobView, list_jobs
from farthing.ledger import (
    LedgerDatabase,
    PendingTransfer,
    Transfer,
    TransferCode,
    TransferFlags,
    lookup_transfers,
)
from farthing.paywall.schemes.auth_capture.contract import AuthCaptureEscrow, EscrowEvent

__all__ = ["JobBreak", "reconcile_jobs"]


@dataclass(frozen=True, slots=True)
class JobBreak:
    """One disagreement about one job; amounts in the asset's atomic units."""

    job_id: int
    kind: str
    message: str
    expected: int | None = None  # what the chain says
    found: int | None = None  # what the row or the books say
    tx_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "kind": self.kind,
            "message": self.message,
            "expected": None if self.expected is None else str(self.expected),
            "found": None if self.found is None else str(self.found),
            "txHash": self.tx_hash,
        }


@dataclass(frozen=True, slots=True)
class _Sums:
    authorized: int
    captured: int
    released: int  # voided or reclaimed
    refunded: int
    capture_txs: frozenset[str]
    refund_txs: frozenset[str]

    @property
    def held(self) -> int:
        return self.authorized - self.captured - self.released


def _sums(events: list[EscrowEvent]) -> _Sums:
    by: dict[str, int] = defaultdict(int)
    for event in events:
        by[event.name] += event.amount
    return _Sums(
        authorized=by["PaymentAuthorized"],
        captured=by["PaymentCaptured"],
        released=by["PaymentVoided"] + by["PaymentReclaimed"],
        refunded=by["PaymentRefunded"],
        capture_txs=frozenset(e.tx_hash.lower() for e in events if e.name == "PaymentCaptured"),
        refund_txs=frozenset(e.tx_hash.lower() for e in events if e.name == "PaymentRefunded"),
    )


def reconcile_jobs(
    database: LedgerDatabase,
    escrow: AuthCaptureEscrow,
    *,
    agent_id: str,
    from_block: int | None = None,
    to_block: int | None = None,
) -> list[JobBreak]:
    """Every break between ``agent_id``'s jobs, its books and the escrow.

    The escrow's events are read from ``from_block``; by default from the
    first block any of these jobs' payments was authorized in (a chain's whole
    history is far too long to read on a real network), or from genesis when
    a payment's block is not known (an authorization sent but not confirmed).
    """
    with database.read() as session:
        jobs = [j for j in list_jobs(session, agent_id=agent_id, limit=1_000) if j.payment_hash]
    if from_block is None:
        blocks = [j.authorize_block for j in jobs]
        known = [b for b in blocks if b is not None]
        from_block = min(known) if known and len(known) == len(blocks) else 0
    events = escrow.events(from_block, to_block)
    by_hash: dict[str, list[EscrowEvent]] = defaultdict(list)
    for event in events:
        by_hash["0x" + event.payment_hash.hex()].append(event)
    breaks: list[JobBreak] = []
    for job in sorted(jobs, key=lambda j: j.id):
        assert job.payment_hash is not None
        breaks.extend(_job_breaks(database, escrow, job, _sums(by_hash.get(job.payment_hash, []))))
    return breaks


def _job_breaks(
    database: LedgerDatabase, escrow: AuthCaptureEscrow, job: JobView, chain: _Sums
) -> list[JobBreak]:
    found: list[JobBreak] = []

    def compare(kind: str, what: str, expected: int, actual: int) -> None:
        if expected != actual:
            found.append(
                JobBreak(
                    job.id,
                    kind,
                    f"{what}: the escrow says {expected}, found {actual}",
                    expected,
                    actual,
                )
            )

    compare("held_mismatch", "held (row)", chain.held, job.held)
    compare("captured_mismatch", "captured (row)", chain.captured, job.captured)
    compare("refunded_mismatch", "refunded (row)", chain.refunded, job.refunded)
    for tx in sorted(chain.capture_txs - {t.lower() for t in job.capture_txs}):
        found.append(
            JobBreak(job.id, "capture_not_recorded", f"capture {tx} is not in the job", tx_hash=tx)
        )
    for tx in sorted(chain.refund_txs - {t.lower() for t in job.refund_txs}):
        found.append(
            JobBreak(job.id, "refund_not_recorded", f"refund {tx} is not in the job", tx_hash=tx)
        )
    if job.payment_info is not None and chain.authorized:
        state = escrow.payment_state(job.payment_info)
        compare(
            "state_held_mismatch", "capturable (paymentState)", state.capturable_amount, job.held
        )
        compare(
            "state_refundable_mismatch",
            "refundable (paymentState)",
            state.refundable_amount,
            job.refundable,
        )

    task = f"job:{job.id}"
    with database.read() as session:
        rows = session.scalars(select(Transfer).where(Transfer.task_id == task)).all()  # type: ignore[arg-type]
        open_hold = 0
        if job.hold_transfer_id is not None:
            pending = session.get(PendingTransfer, job.hold_transfer_id)
            (hold,) = lookup_transfers(session=session, ids=[job.hold_transfer_id]) or (None,)
            open_hold = hold.amount if pending is not None and hold is not None else 0
    posted = sum(
        r.amount
        for r in rows
        if r.code == TransferCode.PAYMENT
        and (r.flags & TransferFlags.POST_PENDING_TRANSFER or not r.flags & _TWO_PHASE)
    )
    refunds = sum(r.amount for r in rows if r.code == TransferCode.CORRECTION)
    compare("books_held_mismatch", "held (books)", chain.held, open_hold + job.held_unbooked)
    compare("books_captured_mismatch", "captured (books)", chain.captured, posted)
    compare("books_refunded_mismatch", "refunded (books)", chain.refunded, refunds)
    return found


_TWO_PHASE = (
    TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.EXPIRE_PENDING_TRANSFER
)
