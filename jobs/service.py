"""The jobs lifecycle: post, accept, deliver, review, capture, void, refund, reclaim.

Each step keeps three things in step: the job's row, the agent's books and
the escrow on chain.

* **post** checks that the agent's budget could hold the price, by booking
  the hold in a database transaction that is then rolled back: a job whose
  hold would pass any budget limit is not posted.
* **accept** books the hold (a pending transfer from the agent's budget to
  the worker, counted by every budget limit) and moves the job to
  ``accepted`` in one database transaction, *before* anything is signed;
  then the payer signs the ERC-3009 authorization and the operator sends
  ``authorize``. A refused authorize voids the hold and reopens the job.
* **deliver** is the worker's: only the address that accepted may deliver.
* **review** asks the reviewer (the agent's model, or a scripted stand-in),
  then the policy decides (``farthing.jobs.decision``); above the threshold
  or on a reject a person approves through the agents' approvals.
* **capture** posts the hold (partly: the rest is held again as a new
  pending transfer, since the escrow still holds it), **void** voids what
  remains, **refund** books a correcting transfer from the worker back to
  the budget, **reclaim** (the payer's own call after the deadline) voids
  what remains, resolved from the chain when someone already sent it.

The chain call comes first for capture, void, refund and reclaim; the books
and the row follow in one database transaction, conditional on the row not
having moved. If a process dies in between, ``farthing jobs reconcile``
reports the break from the escrow's events.

Refusals are :class:`JobResult` values with a snake_case ``reason`` and a
one-line ``message``; nothing is sent and nothing is booked for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from farthing.agents.approvals import get_approval, request_approval, wait_for_decision
from farthing.agents.books import AgentBooks
from farthing.agents.policy import check_payee
from farthing.invariant import invariant
from farthing.jobs.decision import Decision, decide
from farthing.jobs.operators.escrow import EscrowOperator
from farthing.jobs.pricing import convert, parse_price, parse_rate
from farthing.jobs.review import Reviewer, ReviewSubject, ScriptedReviewer
from farthing.jobs.settings import JobSettings
from farthing.jobs.states import JobState, can_move
from farthing.jobs.store import (
    JobView,
    StaleJob,
    capture_id,
    hold_id,
    insert_job,
    list_jobs,
    load,
    move,
    refund_id,
)
from farthing.jobs.tables import ensure_tables
from farthing.ledger import (
    CreateTransferResult,
    NewTransfer,
    PaymentDetails,
    TransferCode,
    TransferFlags,
    create_transfers,
    lookup_accounts,
    new_id,
    resolution_id,
)
from farthing.paywall.schemes.auth_capture.contract import (
    AuthCaptureEscrow,
    PaymentInfo,
    sign_payment_authorization,
)
from farthing.wallet.address import ZERO_ADDRESS, checksum, is_address
from farthing.wallet.chain import Chain, TxResult
from farthing.wallet.eip3009 import TokenDomain
from farthing.wallet.signer import Signer, TxSigner

__all__ = ["JobResult", "JobService", "PayerKey", "SaltingOperator"]

_DELIVERY_KINDS: Final = ("text", "file", "url")
_S = JobState
_HOLDING: Final = frozenset({_S.ACCEPTED, _S.DELIVERED, _S.ACCEPTED_DELIVERY, _S.PARTIALLY_PAID})
_CAPTURABLE: Final = frozenset({_S.DELIVERED, _S.ACCEPTED_DELIVERY, _S.PARTIALLY_PAID})


class PayerKey(Signer, TxSigner, Protocol):
    """The agent's wallet: it signs the payer's authorization and sends ``reclaim``."""


@runtime_checkable
class SaltingOperator(Protocol):
    """An operator that chooses each payment's ``PaymentInfo.salt`` (a facilitator binds it).

    The x402 facilitator relays lifecycle calls only for a salt bound to the
    receiver authorizer (``farthing.jobs.operators.facilitator``); any other
    operator gets 32 random bytes.
    """

    def payment_salt(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of one step: ``ok``, or a snake_case ``reason`` with a one-line ``message``."""

    ok: bool
    job: JobView | None
    reason: str | None = None
    message: str | None = None
    tx_hash: str | None = None
    approval_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "message": self.message,
            "txHash": self.tx_hash,
            "approvalId": self.approval_id,
            "job": None if self.job is None else self.job.to_json(),
        }


class _Refused(Exception):
    """Rolls a database transaction back with a reason; never leaves this module."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _refused(job: JobView | None, reason: str, message: str) -> JobResult:
    return JobResult(False, job, reason, message)


def _is_text(value: str) -> bool:
    # A lone surrogate (from undecodable bytes on a command line, or a \ud800
    # escape) cannot be stored or shown: it is not text.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class JobService:
    """One agent's jobs: its books, its wallet (the payer), the escrow operator and a reviewer."""

    def __init__(
        self,
        *,
        books: AgentBooks,
        chain: Chain,
        operator: EscrowOperator,
        payer: PayerKey,
        escrow: AuthCaptureEscrow | None = None,
        reviewer: Reviewer | None = None,
        settings: JobSettings | None = None,
    ) -> None:
        invariant(books.asset.network == chain.network, "the books' asset is on this chain")
        self.books = books.ensure()
        self.database = books.database
        self.chain = chain
        self.operator = operator
        self.payer = payer
        self.escrow = escrow or AuthCaptureEscrow(chain)
        self.reviewer: Reviewer = reviewer or ScriptedReviewer()
        self.settings = settings or JobSettings()
        self.asset = books.asset
        ensure_tables(self.database)

    def __repr__(self) -> str:
        return f"JobService({self.books.agent_id!r}, {self.asset.symbol} on {self.chain.network})"

    # ------------------------------------------------------------ reading

    def get(self, job_id: int) -> JobView:
        with self.database.read() as session:
            return load(session, job_id)

    def list(self, *, state: str | None = None, limit: int = 100) -> list[JobView]:
        with self.database.read() as session:
            return list_jobs(session, agent_id=self.books.agent_id, state=state, limit=limit)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with self.database.write() as session:
                yield session
        except StaleJob:
            raise _Refused(
                "job_changed_concurrently", "another process moved this job first; look again"
            ) from None

    def _run(self, job_id: int, step: Callable[[JobView], JobResult]) -> JobResult:
        job = self.get(job_id)
        try:
            return step(job)
        except _Refused as refused:
            return _refused(self._fresh(job_id), refused.reason, refused.message)

    def _fresh(self, job_id: int) -> JobView | None:
        try:
            return self.get(job_id)
        except Exception:  # noqa: BLE001 - only for the refusal's snapshot
            return None

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
                return _refused(None, f"{name}_missing", f"a job needs a {name}")
            if not _is_text(text):
                return _refused(None, "invalid_text", f"the {name} is not valid text")
            if len(text) > (200 if name == "title" else limit):
                return _refused(None, f"{name}_too_long", f"the {name} is too long")
        quoted = parse_price(price, self.asset)
        stored_rate = parse_rate(rate) if rate is not None else None
        amount = convert(quoted, self.asset, stored_rate)
        now = self.chain.timestamp()
        if deadline < now + self.settings.deadline_min_s:
            return _refused(
                None,
                "deadline_too_soon",
                f"the deadline must be at least {self.settings.deadline_min_s} s after the chain's now ({now})",
            )
        if deadline > now + self.settings.deadline_max_s:
            return _refused(None, "deadline_too_far", "the deadline is too far in the future")
        reason = self._dry_run_hold(amount, title)
        if reason is not None:
            return _refused(
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
                raise _Refused(reason or "ok", "dry run")
        except _Refused as outcome:
            return None if outcome.reason == "ok" else outcome.reason

    def _book_hold(
        self,
        session: Session,
        *,
        hold: int,
        amount: int,
        worker: str,
        job_id: int,
        title: str,
        rate: str | None = None,
        currency: str | None = None,
    ) -> str | None:
        """Book a pending transfer budget → worker; the first limit it passes, or None."""
        payee = self.books.ensure_payee(session, worker)
        (result,) = create_transfers(
            session=session,
            transfers=[
                NewTransfer(
                    id=hold,
                    debit_account_id=self.books.budget_account_id,
                    credit_account_id=payee,
                    amount=amount,
                    ledger=self.books.ledger,
                    code=TransferCode.PAYMENT,
                    flags=TransferFlags.PENDING,
                    timeout_s=0,  # resolved from the escrow, never by the clock
                    payment=self._details(job_id, worker, f"job hold: {title}", rate, currency),
                )
            ],
        )
        if result is not CreateTransferResult.OK:
            return str(result)
        # Still under the ledger's write lock: the agent's lifetime budget.
        total = self.books.read_policy(session).total_budget
        if total is not None:
            (account,) = lookup_accounts(session=session, ids=[self.books.budget_account_id])
            if account.debits_posted + account.debits_pending > total:
                return "exceeds_total_budget"
        return None

    def _details(
        self,
        job_id: int,
        worker: str,
        purpose: str,
        rate: str | None,
        currency: str | None,
        *,
        tx_hash: str | None = None,
        block_number: int | None = None,
    ) -> PaymentDetails:
        # No network/token facts: escrow money is not a token transfer per
        # payment, so the token reconciliation leaves these to reconcile_jobs.
        return PaymentDetails(
            payer_address=self.payer.address,
            payee_address=worker,
            resource=f"job:{job_id}",
            task_id=f"job:{job_id}",
            purpose=purpose[:2048],
            fiat_rate=rate,
            fiat_currency=currency,
            tx_hash=tx_hash,
            block_number=block_number,
        )

    def _job_details(
        self, job: JobView, purpose: str, tx: TxResult | None = None
    ) -> PaymentDetails:
        invariant(job.worker is not None, "a booked job has a worker")
        assert job.worker is not None
        fiat = job.currency != self.asset.symbol.upper()
        return self._details(
            job.id,
            job.worker,
            f"{purpose}: {job.title}",
            job.rate if fiat else None,
            job.currency if fiat else None,
            tx_hash=tx.tx_hash if tx else None,
            block_number=tx.block_number if tx else None,
        )

    # ------------------------------------------------------------ accept

    def accept(self, job_id: int, worker: str) -> JobResult:
        """A worker takes the job: the hold is booked, signed and authorized in escrow."""
        return self._run(job_id, lambda job: self._accept(job, worker))

    def _accept(self, job: JobView, worker: str) -> JobResult:
        if not isinstance(worker, str) or not is_address(worker.strip()):
            return _refused(job, "invalid_worker", f"not an address: {worker!r}")
        worker = checksum(worker.strip())
        if job.state is not JobState.OPEN:
            return _refused(job, "job_not_open", f"job {job.id} is {job.state}, not open")
        if worker.lower() in {
            self.payer.address.lower(),
            self.operator.address.lower(),
            ZERO_ADDRESS,
        }:
            return _refused(
                job, "invalid_worker", "the worker must not be the payer or the operator"
            )
        denied = check_payee(self.books.policy(), worker)
        if denied is not None:
            return _refused(job, denied, f"the spend policy does not pay {worker} ({denied})")
        now = self.chain.timestamp()
        if now >= job.deadline:
            return _refused(job, "past_deadline", f"job {job.id}'s deadline has passed")
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
                raise _Refused(
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
            return _refused(
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

    def _resolve_hold(
        self,
        session: Session,
        job: JobView,
        *,
        post: int | None,
        details: PaymentDetails | None = None,
    ) -> None:
        """Post ``post`` of the open hold (None: void it); the rest is released by the ledger."""
        if job.hold_transfer_id is None:
            return
        pending = job.hold_transfer_id
        event = (
            NewTransfer.void(id=resolution_id(pending), pending_id=pending, payment=details)
            if post is None
            else NewTransfer.post(
                id=resolution_id(pending), pending_id=pending, amount=post, payment=details
            )
        )
        (result,) = create_transfers(session=session, transfers=[event])
        invariant(result.succeeded, f"the ledger refused to resolve job {job.id}'s hold: {result}")

    # ------------------------------------------------------------ deliver

    def deliver(self, job_id: int, worker: str, content: str, *, kind: str = "text") -> JobResult:
        """The worker hands in text, a file reference or a URL; anyone else is refused."""
        return self._run(job_id, lambda job: self._deliver(job, worker, content, kind))

    def _deliver(self, job: JobView, worker: str, content: str, kind: str) -> JobResult:
        if job.state is not JobState.ACCEPTED:
            return _refused(
                job, "not_awaiting_delivery", f"job {job.id} is {job.state}, not accepted"
            )
        if (
            not isinstance(worker, str)
            or job.worker is None
            or worker.strip().lower() != job.worker.lower()
        ):
            return _refused(job, "not_the_worker", f"only {job.worker} may deliver job {job.id}")
        if kind not in _DELIVERY_KINDS:
            return _refused(job, "invalid_delivery_kind", "a delivery is text, file or url")
        if not content.strip():
            return _refused(job, "empty_delivery", "the delivery is empty")
        if not _is_text(content):
            return _refused(job, "invalid_text", "the delivery is not valid text")
        if len(content) > self.settings.delivery_chars_max:
            return _refused(job, "delivery_too_long", "the delivery is too long")
        if kind == "url" and not content.strip().startswith(("https://", "http://")):
            return _refused(job, "invalid_delivery_url", "a delivered URL starts with http(s)://")
        with self._write() as session:
            move(session, job, state=JobState.DELIVERED, delivery_kind=kind, delivery=content)
        return JobResult(True, self.get(job.id))

    # ------------------------------------------------------------ review

    def review(
        self, job_id: int, *, reviewer: Reviewer | None = None, wait_s: float = 0
    ) -> JobResult:
        """Review the delivery, let the policy decide, ask a person if needed, then pay or void.

        Run again after a person decided (``farthing agent approvals approve``)
        to carry out the approved decision; ``wait_s`` waits for it here.
        """
        return self._run(job_id, lambda job: self._review(job, reviewer or self.reviewer, wait_s))

    def _review(self, job: JobView, reviewer: Reviewer, wait_s: float) -> JobResult:
        if job.review is None:
            if job.state is not JobState.DELIVERED:
                return _refused(
                    job, "not_delivered", f"job {job.id} is {job.state}: nothing to review"
                )
            invariant(job.delivery is not None, "a delivered job has its delivery")
            subject = ReviewSubject(
                job.id,
                job.title,
                job.specification,
                job.criteria,
                job.delivery_kind or "text",
                job.delivery or "",
            )
            verdict = reviewer.review(subject)
            decision = decide(verdict, held=job.held, policy=self.books.policy())
            record = {
                "verdict": verdict.model_dump(),
                "decision": decision.to_json(),
                "reviewer": reviewer.description,
            }
            approval_id = None
            if decision.needs_approval:
                approval_id = request_approval(
                    self.database,
                    agent_id=job.agent_id,
                    asset=self.asset,
                    amount=decision.amount if decision.action == "capture" else job.held,
                    pay_to=job.worker or ZERO_ADDRESS,
                    resource=f"job:{job.id}",
                    task_id=f"job:{job.id}",
                    purpose=f"{decision.action} job {job.id} ({job.title}): {decision.why}",
                ).id
            with self._write() as session:
                changes: dict[str, Any] = {"review": record, "approval_id": approval_id}
                if decision.action == "capture":
                    changes["state"] = JobState.ACCEPTED_DELIVERY
                move(session, job, **changes)
            job = self.get(job.id)
        review = job.review
        invariant(review is not None, "a reviewed job keeps its review")
        assert review is not None
        d = review["decision"]
        decision = Decision(d["action"], int(d["amount"]), bool(d["needsApproval"]), d["why"])
        if decision.needs_approval:
            invariant(job.approval_id is not None, "a decision that needs approval has a request")
            assert job.approval_id is not None
            approval = (
                wait_for_decision(self.database, job.approval_id, timeout_s=wait_s)
                if wait_s > 0
                else get_approval(self.database, job.approval_id)
            )
            status = approval.status if approval is not None else "missing"
            if status == "pending":
                return JobResult(
                    True,
                    job,
                    "awaiting_approval",
                    f"approval request {job.approval_id} waits for a person: "
                    f"farthing agent approvals approve {job.approval_id}",
                    approval_id=job.approval_id,
                )
            if status != "approved":
                return JobResult(
                    False,
                    job,
                    f"approval_{status}",
                    f"approval request {job.approval_id} is {status}: nothing was paid or voided; "
                    "capture or void by hand",
                    approval_id=job.approval_id,
                )
        if job.state not in _HOLDING:
            return JobResult(True, job, "already_settled", f"job {job.id} is already {job.state}")
        return self._carry_out(job, decision)

    def _carry_out(self, job: JobView, decision: Decision) -> JobResult:
        if decision.action == "void":
            return self._void(job)
        if job.captured == 0:
            captured = self._capture(job, decision.amount)
            if not captured.ok or captured.job is None or captured.job.held == 0:
                return captured
            job = captured.job
        return self._void(job)

    # ------------------------------------------------------------ capture

    def capture(self, job_id: int, amount: int | None = None) -> JobResult:
        """Pay ``amount`` (default: all that is held) to the worker out of the hold."""
        return self._run(job_id, lambda job: self._capture(job, amount))

    def _capture(self, job: JobView, amount: int | None) -> JobResult:
        if job.state not in _CAPTURABLE:
            if job.state in (JobState.OPEN, JobState.ACCEPTED):
                return _refused(
                    job, "not_delivered", f"job {job.id} is {job.state}: nothing delivered yet"
                )
            return _refused(job, "nothing_on_hold", f"job {job.id} is {job.state}: nothing is held")
        amount = job.held if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return _refused(job, "invalid_amount", "a capture is a positive int of atomic units")
        if amount > job.held:
            return _refused(
                job,
                "capture_exceeds_hold",
                f"{self.asset.format(amount)} is more than the {self.asset.format(job.held)} held",
            )
        if self.chain.timestamp() >= job.deadline:
            return _refused(job, "past_deadline", f"job {job.id}'s capture deadline has passed")
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
        if job.state not in _HOLDING or job.held == 0:
            return _refused(
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
            return _refused(job, "nothing_captured", f"job {job.id} has captured nothing to refund")
        amount = job.refundable if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return _refused(job, "invalid_amount", "a refund is a positive int of atomic units")
        if amount > job.refundable:
            return _refused(
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
        if job.state not in _HOLDING or job.held == 0:
            return _refused(job, "nothing_on_hold", f"job {job.id} is {job.state}: nothing is held")
        if self.chain.timestamp() < job.deadline:
            return _refused(
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
                return _refused(
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

    # ------------------------------------------------------------ helpers

    def _payment_salt(self) -> bytes:
        if isinstance(self.operator, SaltingOperator):
            salt = self.operator.payment_salt()
            invariant(len(salt) == 32, "a payment salt is 32 bytes")
            return salt
        return secrets.token_bytes(32)

    def _info(self, job: JobView) -> PaymentInfo:
        invariant(job.payment_info is not None, f"job {job.id} has no payment info")
        assert job.payment_info is not None
        return job.payment_info

    def _chain_refused(self, job: JobView, step: str, tx: TxResult) -> JobResult:
        reason = tx.reason or f"{step}_refused"
        if tx.sent:
            return JobResult(
                False,
                job,
                reason,
                f"{step} was sent ({tx.tx_hash}) and not confirmed ({reason}); "
                "run `farthing jobs reconcile` before trying again",
                tx.tx_hash,
            )
        return _refused(job, reason, f"the escrow refused the {step} ({reason}); nothing was sent")
