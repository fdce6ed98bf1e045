"""Payments in the agent's books: reserve before signing, then post, void, or leave pending.

:func:`reserve` writes the pending transfer that holds a payment's amount,
with every fact needed to find it again and to resolve it from the chain:
the payment id (the transfer id, made by the client), the authorization's
nonce and window, the payee, the resource, the task and the purpose. It is
committed *before* anything is signed.

Every budget is checked in that one database transaction. The ledger checks
its own (the booked funds, the payment cap, the daily limit, the per-payee
cap, the asset allowlist) while it holds its write lock; then, still holding
it, this module adds up the task's spend and the agent's lifetime spend
*including* the new reservation and rolls the whole transaction back if
either budget would be passed. Two processes sharing one budget therefore
take turns and can never overspend it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from farthing.agents.books import AgentBooks
from farthing.agents.challenge import FiatTerms
from farthing.agents.tables import agent_policy
from farthing.ledger import (
    CreateTransferResult,
    PaymentDetails,
    PendingTransfer,
    Transfer,
    TransferFlags,
    lookup_accounts,
    release_payment,
    reserve_payment,
    settle_payment,
)
from farthing.ledger.flags import RESOLVING_FLAGS
from farthing.ledger.tables import table_of

__all__ = [
    "BookedPayment",
    "PaymentIntent",
    "booked_payments",
    "budget_passed",
    "find_open_payment",
    "open_payments",
    "release",
    "reserve",
    "settle",
    "task_spend",
]

_transfers = table_of(Transfer)
_pending = table_of(PendingTransfer)


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    """A payment about to be signed: everything the reservation records."""

    payment_id: int
    payer: str
    pay_to: str
    amount: int
    resource: str
    nonce: bytes
    valid_after: int
    valid_before: int
    task_id: str | None = None
    purpose: str | None = None
    fiat: FiatTerms | None = None

    def details(self, books: AgentBooks) -> PaymentDetails:
        return PaymentDetails(
            network=books.asset.network,
            token_address=books.asset.address,
            authorization_nonce="0x" + self.nonce.hex(),
            payer_address=self.payer,
            payee_address=self.pay_to,
            resource=self.resource[:2048],
            task_id=self.task_id,
            purpose=(self.purpose or "")[:2048] or None,
            fiat_rate=self.fiat.rate if self.fiat else None,
            fiat_currency=self.fiat.currency if self.fiat else None,
            valid_after=self.valid_after,
            valid_before=self.valid_before,
        )


class _Refused(Exception):
    """Rolls the reservation's database transaction back; never leaves this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reserve(books: AgentBooks, intent: PaymentIntent) -> str:
    """Reserve ``intent``: ``"ok"``, ``"exists"`` (a retry), or the first budget it would pass."""
    books.ensure()
    try:
        with books.database.write() as session:
            payee = books.ensure_payee(session, intent.pay_to)
            result = reserve_payment(
                session=session,
                payment_id=intent.payment_id,
                budget_account_id=books.budget_account_id,
                payee_account_id=payee,
                amount=intent.amount,
                ledger=books.ledger,
                payment=intent.details(books),
            )
            if result is not CreateTransferResult.OK:
                return str(result)
            passed = budget_passed(session, books, intent.task_id)
            if passed is not None:
                raise _Refused(passed)
    except _Refused as refused:
        return refused.reason
    return "ok"


def settle(
    books: AgentBooks,
    payment_id: int,
    *,
    tx_hash: str | None,
    block_number: int | None = None,
    amount: int | None = None,
) -> str:
    """Post a reserved payment with its transaction; ``"ok"``, ``"exists"`` or the ledger's reason.

    ``amount`` (an ``upto`` payment's settled amount) posts that much and
    releases the rest; the ledger refuses more than was reserved.
    """
    with books.database.write() as session:
        result = settle_payment(
            session=session,
            payment_id=payment_id,
            payment=PaymentDetails(tx_hash=tx_hash, block_number=block_number),
            amount=amount,
        )
    return str(result)


def release(books: AgentBooks, payment_id: int) -> str:
    """Void a reserved payment that certainly did not move money."""
    with books.database.write() as session:
        result = release_payment(session=session, payment_id=payment_id)
    return str(result)


def budget_passed(session: Session, books: AgentBooks, task_id: str | None) -> str | None:
    """The first budget the spends booked in ``session`` pass, or ``None``.

    ``"exceeds_task_budget"`` (the task's budget, when ``task_id`` names one)
    or ``"exceeds_total_budget"`` (the agent's lifetime budget). Called with
    the ledger's write lock held, after a new reservation is written and
    before it commits, so these sums see every other process's reservations,
    and they see ours; the caller rolls back when it answers a reason.
    """
    if task_id is not None:
        budget = books.task_budget(session, task_id)
        spent = task_spend(session, books.budget_account_id, task_id)
        if budget is not None and spent > budget:
            return "exceeds_task_budget"
    total = session.execute(
        select(agent_policy.c.total_budget).where(agent_policy.c.agent_id == books.agent_id)
    ).scalar()
    if total is not None:
        (account,) = lookup_accounts(session=session, ids=[books.budget_account_id])
        if account.debits_posted + account.debits_pending > total:
            return "exceeds_total_budget"
    return None


def task_spend(session: Session, budget_account_id: int, task_id: str) -> int:
    """What a task has spent or holds reserved: open reservations plus posted amounts."""
    t = _transfers
    query = (
        select(t.c.flags, t.c.amount, _pending.c.transfer_id)
        .outerjoin(_pending, _pending.c.transfer_id == t.c.id)
        .where(t.c.debit_account_id == budget_account_id, t.c.task_id == task_id)
    )
    total = 0
    for flags, amount, open_id in session.execute(query):
        if flags & TransferFlags.PENDING:
            total += amount if open_id is not None else 0
        elif flags & TransferFlags.POST_PENDING_TRANSFER or not flags & RESOLVING_FLAGS:
            total += amount  # a posted amount, or a single-phase correction
    return total


@dataclass(frozen=True, slots=True)
class BookedPayment:
    """One payment as the agent's books tell it."""

    payment_id: int
    state: str  # reserved | posted | voided | expired
    amount: int  # the posted amount once posted, else the reserved amount
    pay_to: str | None
    resource: str | None
    task_id: str | None
    purpose: str | None
    tx_hash: str | None
    nonce: str | None
    valid_after: int | None
    valid_before: int | None
    timestamp_ns: int


def booked_payments(books: AgentBooks, *, task_id: str | None = None) -> list[BookedPayment]:
    """The agent's payments, oldest first, optionally for one task."""
    t = _transfers
    where = [t.c.debit_account_id == books.budget_account_id]
    if task_id is not None:
        where.append(t.c.task_id == task_id)
    with books.database.read() as session:
        rows = list(session.execute(select(t).where(*where).order_by(t.c.timestamp_ns)))
    resolutions = {row.pending_id: row for row in rows if row.pending_id is not None}
    out: list[BookedPayment] = []
    for row in rows:
        if not row.flags & TransferFlags.PENDING:
            continue
        resolution = resolutions.get(row.id)
        state, amount, tx_hash = "reserved", row.amount, row.tx_hash
        if resolution is not None:
            if resolution.flags & TransferFlags.POST_PENDING_TRANSFER:
                state, amount, tx_hash = "posted", resolution.amount, resolution.tx_hash
            elif resolution.flags & TransferFlags.VOID_PENDING_TRANSFER:
                state = "voided"
            else:
                state = "expired"
        out.append(
            BookedPayment(
                payment_id=row.id,
                state=state,
                amount=amount,
                pay_to=row.payee_address,
                resource=row.resource,
                task_id=row.task_id,
                purpose=row.purpose,
                tx_hash=tx_hash,
                nonce=row.authorization_nonce,
                valid_after=row.valid_after,
                valid_before=row.valid_before,
                timestamp_ns=row.timestamp_ns,
            )
        )
    return out


def open_payments(books: AgentBooks) -> list[BookedPayment]:
    """Reservations not yet posted, voided or expired: spent, or possibly spent."""
    return [p for p in booked_payments(books) if p.state == "reserved"]


def find_open_payment(
    books: AgentBooks, *, task_id: str | None, resource: str, pay_to: str, amount: int
) -> BookedPayment | None:
    """An open reservation for the same purchase: its authorization may already be out there."""
    t = _transfers
    query = (
        select(t.c.id)
        .join(_pending, _pending.c.transfer_id == t.c.id)
        .where(
            t.c.debit_account_id == books.budget_account_id,
            t.c.resource == resource[:2048],
            t.c.payee_address == pay_to.lower(),
            t.c.amount == amount,
            # Only a reservation with an authorization can have one "out there"
            # (a channel charge has none; its voucher lives with its channel).
            t.c.authorization_nonce.is_not(None),
        )
    )
    query = query.where(t.c.task_id.is_(None) if task_id is None else t.c.task_id == task_id)
    with books.database.read() as session:
        found = session.execute(query.order_by(t.c.timestamp_ns.desc()).limit(1)).first()
    if found is None:
        return None
    return next((p for p in open_payments(books) if p.payment_id == found.id), None)
