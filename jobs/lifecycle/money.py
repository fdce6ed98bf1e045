"""The money moves of a held job: capture, void, refund and reclaim.

* **capture** posts the hold (partly: the rest is held again as a new
  pending transfer, since the escrow still holds it), **void** voids what
  remains, **refund** books a correcting transfer from the worker back to
  the budget, **reclaim** (the payer's own call after the deadline) voids
  what remains, resolved from the chain when someone already sent it.

The chain call comes first; the books and the row follow in one database
transaction, conditional on the row not having moved. If a process dies in
between, ``farthing jobs reconcile`` reports the break from the escrow's
events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from farthing.invariant import invariant
from farthing.jobs.lifecycle.core import CAPTURABLE, HOLDING, JobCore
from farthing.jobs.lifecycle.result import JobResult, refused
from farthing.jobs.states import JobState, can_move
from farthing.jobs.store import JobView, capture_id, hold_id, move, refund_id
from farthing.ledger import NewTransfer, PaymentDetails, TransferCode, create_transfers
from farthing.wallet.chain import TxResult

__all__ = ["MoneySteps"]


class MoneySteps(JobCore):
    """``capture``, ``void``, ``refund`` and ``reclaim``: the chain call, then the books and the row."""

    # ------------------------------------------------------------ capture

    def capture(self, job_id: int, amount: int | None = None) -> JobResult:
        """Pay ``amount`` (default: all that is held) to the worker out of the hold."""
        return self._run(job_id, lambda job: self._capture(job, amount))

    def _capture(self, job: JobView, amount: int | None) -> JobResult:
        if job.state not in CAPTURABLE:
            if job.state in (JobState.OPEN, JobState.ACCEPTED):
                return refused(
                    job, "not_delivered", f"job {job.id} is {job.state}: nothing delivered yet"
                )
            return refused(job, "nothing_on_hold", f"job {job.id} is {job.state}: nothing is held")
        amount = job.held if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return refused(job, "invalid_amount", "a capture is a positive int of atomic units")
        if amount > job.held:
            return refused(
                job,
                "capture_exceeds_hold",
                f"{self.asset.format(amount)} is more than the {self.asset.format(job.held)} held",
            )
        if self.chain.timestamp() >= job.deadline:
            return refused(job, "past_deadline", f"job {job.id}'s capture deadline has passed")
        info = self._info(job)
        tx = self.operator.capture(info, amount)
        if not tx.ok:
            return self._chain_refused(job, "capture", tx)
        rest = job.held - amount
        with self._write() as session:
            changes: dict[str, Any] = {
                "captured": job.captured + amount,
                "held": rest,
                "capture_txs": [*job.capture_txs, tx.tx_hash],
                "state": JobState.PAID if rest == 0 else JobState.PARTIALLY_PAID,
            }
            if job.hold_transfer_id is None:
                # The hold was never booked (see held_unbooked): book the payment itself.
                self._book_plain(session, job, amount, tx)
                changes["held_unbooked"] = rest
            else:
                self._resolve_hold(
                    session, job, post=amount, details=self._job_details(job, "job capture", tx)
                )
                changes["hold_transfer_id"] = None
                if rest > 0:
                    # The escrow still holds the rest: hold it in the books again.
                    seq = job.hold_seq + 1
                    hold = hold_id(job.agent_id, job.id, seq)
                    invariant(job.worker is not None, "a held job has a worker")
                    assert job.worker is not None
                    fiat = job.currency != self.asset.symbol.upper()
                    reason = self._book_hold(
                        session,
                        hold=hold,
                        amount=rest,
                        worker=job.worker,
                        job_id=job.id,
                        title=job.title,
                        rate=job.rate if fiat else None,
                        currency=job.currency if fiat else None,
                    )
                    if reason is None:
                        changes.update(hold_transfer_id=hold, hold_seq=seq)
                    else:
                        changes.update(
                            held_unbooked=rest, note=f"rest not held in the books: {reason}"
                        )
            move(session, job, **changes)
        return JobResult(True, self.get(job.id), tx_hash=tx.tx_hash)

    def _book_plain(self, session: Session, job: JobView, amount: int, tx: TxResult) -> None:
        invariant(job.worker is not None, "a paid job has a worker")
        assert job.worker is not None
        payee = self.books.ensure_payee(session, job.worker)
        (result,) = create_transfers(
            session=session,
            transfers=[
                NewTransfer(
                    id=capture_id(job.agent_id, job.id, len(job.capture_txs) + 1),
                    debit_account_id=self.books.budget_account_id,
                    credit_account_id=payee,
                    amount=amount,
                    ledger=self.books.ledger,
                    code=TransferCode.PAYMENT,
                    payment=self._job_details(job, "job capture", tx),
                )
            ],
        )
        invariant(result.succeeded, f"the ledger refused job {job.id}'s capture: {result}")

    # ------------------------------------------------------------ void

    def void(self, job_id: int) -> JobResult:
        """Release what is still held to the payer (an open job is simply withdrawn)."""
        return self._run(job_id, self._void)

    def _void(self, job: JobView) -> JobResult:
        if job.state is JobState.OPEN:
            with self._write() as session:
                move(session, job, state=JobState.VOIDED, note="withdrawn before anyone accepted")
            return JobResult(True, self.get(job.id))
        if job.state not in HOLDING or job.held == 0:
            return refused(
                job, "nothing_on_hold", f"job {job.id} is {job.state}: nothing is held to void"
            )
        tx = self.operator.void(self._info(job))
        if not tx.ok:
            return self._chain_refused(job, "void", tx)
        with self._write() as session:
            self._resolve_hold(
                session, job, post=None, details=self._job_details(job, "job void", tx)
            )
            move(
                session,
                job,
                state=JobState.PAID if job.captured else JobState.VOIDED,
                held=0,
                held_unbooked=0,
                hold_transfer_id=None,
                void_tx=tx.tx_hash,
            )
        return JobResult(True, self.get(job.id), tx_hash=tx.tx_hash)

    # ------------------------------------------------------------ refund

    def refund(self, job_id: int, amount: int | None = None) -> JobResult:
        """Return ``amount`` (default: all still refundable) of what was captured to the payer."""
        return self._run(job_id, lambda job: self._refund(job, amount))

    def _refund(self, job: JobView, amount: int | None) -> JobResult:
        if job.captured == 0:
            return refused(job, "nothing_captured", f"job {job.id} has captured nothing to refund")
        amount = job.refundable if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return refused(job, "invalid_amount", "a refund is a positive int of atomic units")
        if amount > job.refundable:
            return refused(
                job,
                "refund_exceeds_captured",
                f"{self.asset.format(amount)} is more than the {self.asset.format(job.refundable)} "
                "captured and not yet refunded",
            )
        tx = self.operator.refund(self._info(job), amount)
        if not tx.ok:
            return self._chain_refused(job, "refund", tx)
        invariant(job.worker is not None, "a captured job has a worker")
        assert job.worker is not None
        seq = job.refund_seq + 1
        with self._write() as session:
            payee = self.books.ensure_payee(session, job.worker)
            (result,) = create_transfers(
                session=session,
                transfers=[
                    NewTransfer(
                        id=refund_id(job.agent_id, job.id, seq),
                        debit_account_id=payee,
                        credit_account_id=self.books.budget_account_id,
                        amount=amount,
                        ledger=self.books.ledger,
                        code=TransferCode.CORRECTION,
                        payment=self._job_details(job, "job refund", tx),
                    )
                ],
            )
            invariant(result.succeeded, f"the ledger refused job {job.id}'s refund: {result}")
            state = job.state
            if job.held == 0 and can_move(job.state, JobState.REFUNDED):
                state = JobState.REFUNDED
            move(
                session,
                job,
                state=state,
                refunded=job.refunded + amount,
                refund_seq=seq,
                refund_txs=[*job.refund_txs, tx.tx_hash],
            )
        return JobResult(True, self.get(job.id), tx_hash=tx.tx_hash)

    # ------------------------------------------------------------ reclaim

    def reclaim(self, job_id: int) -> JobResult:
        """The payer takes back what is still held, after the deadline; resolved from the chain."""
        return self._run(job_id, self._reclaim)

    def _reclaim(self, job: JobView) -> JobResult:
        if job.state not in HOLDING or job.held == 0:
            return refused(job, "nothing_on_hold", f"job {job.id} is {job.state}: nothing is held")
        if self.chain.timestamp() < job.deadline:
            return refused(
                job, "before_deadline", f"job {job.id} can be reclaimed only after its deadline"
            )
        info = self._info(job)
        tx_hash: str | None = None
        block: int | None = None
        if self.escrow.payment_state(info).capturable_amount == 0:
            # Someone already released it: find out how from the escrow's events.
            found = [
                e
                for e in self.escrow.events(
                    job.authorize_block or 0,
                    payment_hash=info.hash(self.chain.chain_id, self.escrow.address),
                )
                if e.name in ("PaymentReclaimed", "PaymentVoided")
            ]
            if not found:
                return refused(
                    job,
                    "hold_not_found_on_chain",
                    "the escrow holds nothing and says nothing released it",
                )
            tx_hash, block = found[-1].tx_hash, found[-1].block_number
        else:
            tx = self.escrow.reclaim(info, sender=self.payer)
            if not tx.ok:
                return self._chain_refused(job, "reclaim", tx)
            tx_hash, block = tx.tx_hash, tx.block_number
        with self._write() as session:
            details = self._job_details(job, "job reclaim")
            details = PaymentDetails(
                **{**details.as_columns(), "tx_hash": tx_hash, "block_number": block}
            )
            self._resolve_hold(session, job, post=None, details=details)
            move(
                session,
                job,
                state=JobState.RECLAIMED,
                held=0,
                held_unbooked=0,
                hold_transfer_id=None,
                reclaim_tx=tx_hash,
            )
        return JobResult(True, self.get(job.id), tx_hash=tx_hash)
