"""``JobCore``: what every job step shares (the service's parts, its reads, the hold in the books).

The steps (``posting``, ``delivery``, ``money``) are mixins over this core:
each reads and moves the job's row through :meth:`JobCore._write` (a stale
row becomes the ``job_changed_concurrently`` refusal), books and resolves
the hold here, and answers a refused chain call the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from farthing.agents.books import AgentBooks
from farthing.invariant import invariant
from farthing.jobs.lifecycle.result import JobResult, Refused, refused
from farthing.jobs.operators.escrow import EscrowOperator
from farthing.jobs.review import Reviewer, ScriptedReviewer
from farthing.jobs.settings import JobSettings
from farthing.jobs.states import JobState
from farthing.jobs.store import JobView, StaleJob, list_jobs, load
from farthing.jobs.tables import ensure_tables
from farthing.ledger import (
    CreateTransferResult,
    NewTransfer,
    PaymentDetails,
    TransferCode,
    TransferFlags,
    create_transfers,
    lookup_accounts,
    resolution_id,
)
from farthing.paywall.schemes.auth_capture.contract import AuthCaptureEscrow
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.wallet.chain import Chain, TxResult
from farthing.wallet.signer import Signer, TxSigner

__all__ = ["CAPTURABLE", "HOLDING", "JobCore", "PayerKey", "SaltingOperator", "is_text"]

_S = JobState
HOLDING: Final = frozenset({_S.ACCEPTED, _S.DELIVERED, _S.ACCEPTED_DELIVERY, _S.PARTIALLY_PAID})
"""The states in which the escrow holds money for the job."""
CAPTURABLE: Final = frozenset({_S.DELIVERED, _S.ACCEPTED_DELIVERY, _S.PARTIALLY_PAID})
"""The holding states with a delivery: what is held may be paid out."""


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


def is_text(value: str) -> bool:
    """Whether ``value`` can be stored and shown (no lone surrogates)."""
    # A lone surrogate (from undecodable bytes on a command line, or a \ud800
    # escape) cannot be stored or shown: it is not text.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class JobCore:
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
        return f"{type(self).__name__}({self.books.agent_id!r}, {self.asset.symbol} on {self.chain.network})"

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
            raise Refused(
                "job_changed_concurrently", "another process moved this job first; look again"
            ) from None

    def _run(self, job_id: int, step: Callable[[JobView], JobResult]) -> JobResult:
        job = self.get(job_id)
        try:
            return step(job)
        except Refused as refusal:
            return refused(self._fresh(job_id), refusal.reason, refusal.message)

    def _fresh(self, job_id: int) -> JobView | None:
        try:
            return self.get(job_id)
        except Exception:  # noqa: BLE001 - only for the refusal's snapshot
            return None

    # ------------------------------------------------------------ the hold in the books
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

    # ------------------------------------------------------------ helpers

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
        return refused(job, reason, f"the escrow refused the {step} ({reason}); nothing was sent")
