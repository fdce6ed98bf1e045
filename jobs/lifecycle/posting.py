"""Posting and accepting a job: the budget's dry run, then the hold booked, signed and authorized.

* **post** checks that the agent's budget could hold the price, by booking
  the hold in a database transaction that is then rolled back: a job whose
  hold would pass any budget limit is not posted.
* **accept** books the hold (a pending transfer from the agent's budget to
  the worker, counted by every budget limit) and moves the job to
  ``accepted`` in one database transaction, *before* anything is signed;
  then the payer signs the ERC-3009 authorization and the operator sends
  ``authorize``. A refused authorize voids the hold and reopens the job.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from farthing.agents.policy import check_payee
from farthing.invariant import invariant
from farthing.jobs.lifecycle.core import JobCore, SaltingOperator, is_text
from farthing.jobs.lifecycle.result import JobResult, Refused, refused
from farthing.jobs.pricing import convert, parse_price, parse_rate
from farthing.jobs.states import JobState
from farthing.jobs.store import JobView, hold_id, insert_job, move
from farthing.ledger import new_id
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo, sign_payment_authorization
from farthing.wallet.address import ZERO_ADDRESS, checksum, is_address
from farthing.wallet.eip3009 import TokenDomain

__all__ = ["PostingSteps"]


class PostingSteps(JobCore):
    """``post`` and ``accept``: a job is offered, then a worker takes it and the hold is made."""

    # ------------------------------------------------------------ post

    def post(
        self,
        *,
        title: str,
        specification: str,
        criteria: str,
        price: str,
        deadline: int,
        rate: str | Decimal | None = None,
    ) -> JobResult:
        """Post a job priced in the worker's currency; refused if its hold would pass the budget."""
        limit = self.settings.text_chars_max
        for name, text in (
            ("title", title),
            ("specification", specification),
            ("criteria", criteria),
        ):
            if not text.strip():
                return refused(None, f"{name}_missing", f"a job needs a {name}")
            if not is_text(text):
                return refused(None, "invalid_text", f"the {name} is not valid text")
            if len(text) > (200 if name == "title" else limit):
                return refused(None, f"{name}_too_long", f"the {name} is too long")
        quoted = parse_price(price, self.asset)
        stored_rate = parse_rate(rate) if rate is not None else None
        amount = convert(quoted, self.asset, stored_rate)
        now = self.chain.timestamp()
        if deadline < now + self.settings.deadline_min_s:
            return refused(
                None,
                "deadline_too_soon",
                f"the deadline must be at least {self.settings.deadline_min_s} s after the chain's now ({now})",
            )
        if deadline > now + self.settings.deadline_max_s:
            return refused(None, "deadline_too_far", "the deadline is too far in the future")
        reason = self._dry_run_hold(amount, title)
        if reason is not None:
            return refused(
                None,
                reason,
                f"the hold of {self.asset.format(amount)} for {quoted} would pass the budget ({reason})",
            )
        with self.database.write() as session:
            job_id = insert_job(
                session,
                {
                    "agent_id": self.books.agent_id,
                    "title": title.strip(),
                    "specification": specification,
                    "criteria": criteria,
                    "price_amount": quoted.amount,
                    "currency": quoted.currency,
                    "currency_decimals": quoted.decimals,
                    "rate": "1" if stored_rate is None else format(stored_rate, "f"),
                    "amount": amount,
                    "network": self.asset.network,
                    "token": self.asset.address,
                    "deadline": deadline,
                    "state": str(JobState.OPEN),
                },
            )
        return JobResult(True, self.get(job_id))

    def _dry_run_hold(self, amount: int, title: str) -> str | None:
        """The first budget limit a hold of ``amount`` would pass now, or None; books nothing."""
        unassigned = f"0x{'0' * 39}1"  # a stand-in payee: the worker is not known yet
        try:
            with self.database.write() as session:
                reason = self._book_hold(
                    session, hold=new_id(), amount=amount, worker=unassigned, job_id=0, title=title
                )
                raise Refused(reason or "ok", "dry run")
        except Refused as outcome:
            return None if outcome.reason == "ok" else outcome.reason

    # ------------------------------------------------------------ accept

    def accept(self, job_id: int, worker: str) -> JobResult:
        """A worker takes the job: the hold is booked, signed and authorized in escrow."""
        return self._run(job_id, lambda job: self._accept(job, worker))

    def _accept(self, job: JobView, worker: str) -> JobResult:
        if not isinstance(worker, str) or not is_address(worker.strip()):
            return refused(job, "invalid_worker", f"not an address: {worker!r}")
        worker = checksum(worker.strip())
        if job.state is not JobState.OPEN:
            return refused(job, "job_not_open", f"job {job.id} is {job.state}, not open")
        if worker.lower() in {
            self.payer.address.lower(),
            self.operator.address.lower(),
            ZERO_ADDRESS,
        }:
            return refused(
                job, "invalid_worker", "the worker must not be the payer or the operator"
            )
        denied = check_payee(self.books.policy(), worker)
        if denied is not None:
            return refused(job, denied, f"the spend policy does not pay {worker} ({denied})")
        now = self.chain.timestamp()
        if now >= job.deadline:
            return refused(job, "past_deadline", f"job {job.id}'s deadline has passed")
        info = PaymentInfo(
            operator=self.operator.address,
            payer=self.payer.address,
            receiver=worker,
            token=self.asset.address,
            max_amount=job.amount,
            pre_approval_expiry=min(now + self.settings.accept_window_s, job.deadline),
            authorization_expiry=job.deadline,
            refund_expiry=job.deadline + self.settings.refund_window_s,
            min_fee_bps=0,
            max_fee_bps=0,
            fee_receiver=ZERO_ADDRESS,
            salt=self._payment_salt(),
        )
        seq = job.hold_seq + 1
        hold = hold_id(job.agent_id, job.id, seq)
        fiat = job.currency != self.asset.symbol.upper()
        with self._write() as session:
            reason = self._book_hold(
                session,
                hold=hold,
                amount=job.amount,
                worker=worker,
                job_id=job.id,
                title=job.title,
                rate=job.rate if fiat else None,
                currency=job.currency if fiat else None,
            )
            if reason is not None:
                raise Refused(
                    reason,
                    f"the hold of {self.asset.format(job.amount)} would pass the budget ({reason})",
                )
            move(
                session,
                job,
                state=JobState.ACCEPTED,
                worker=worker,
                payment_info=info,
                payment_hash="0x" + info.hash(self.chain.chain_id, self.escrow.address).hex(),
                hold_transfer_id=hold,
                hold_seq=seq,
                held=job.amount,
                note=None,
            )
        accepted = self.get(job.id)
        signature = sign_payment_authorization(
            self.payer, info, TokenDomain.for_asset(self.asset), contracts=self.escrow.contracts
        ).signature
        tx = self.operator.authorize(info, job.amount, signature)
        if not tx.ok and not tx.sent:
            # Refused before anything was sent: release the hold and reopen.
            with self._write() as session:
                self._resolve_hold(session, accepted, post=None)
                move(
                    session,
                    accepted,
                    state=JobState.OPEN,
                    worker=None,
                    payment_info=None,
                    payment_hash=None,
                    hold_transfer_id=None,
                    held=0,
                    note=f"authorize refused: {tx.reason}",
                )
            return refused(
                self.get(job.id),
                tx.reason or "authorize_refused",
                f"the escrow refused the hold ({tx.reason})",
            )
        with self._write() as session:
            move(
                session,
                accepted,
                authorize_tx=tx.tx_hash,
                authorize_block=tx.block_number,
                note=None if tx.ok else f"authorize sent but not confirmed: {tx.reason}",
            )
        if not tx.ok:
            return JobResult(
                False,
                self.get(job.id),
                tx.reason or "authorize_unconfirmed",
                "authorize was sent and not confirmed; run `farthing jobs reconcile`",
                tx.tx_hash,
            )
        return JobResult(True, self.get(job.id), tx_hash=tx.tx_hash)

    def _payment_salt(self) -> bytes:
        if isinstance(self.operator, SaltingOperator):
            salt = self.operator.payment_salt()
            invariant(len(salt) == 32, "a payment salt is 32 bytes")
            return salt
        return secrets.token_bytes(32)
