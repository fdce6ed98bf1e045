"""``upto`` payments in the agent's books: the ceiling reserved, the settled amount posted, what did not match.

An ``upto`` payment is one pending transfer with code :data:`UPTO_PAYMENT`
(its nonce is Permit2's, so it must never be read as an EIP-3009
authorization: its ``authorization_nonce`` stays empty and the Permit2 nonce
is derived from the payment id, ``farthing.agents.permits.permit_nonce``).
:func:`reserve_ceiling` writes it for the **ceiling**, checked against every
budget in one database transaction exactly as ``exact``'s reservation
(``farthing.agents.reservations``); :func:`post_settled` posts what the chain
moved, a two-phase post at a smaller amount that releases the rest (the
ledger refuses more than was reserved), or voids it when nothing moved.

A seller's claim that the chain does not bear out is a **discrepancy**:
:func:`record_discrepancy` appends ``discrepancy_upto_<kind>`` to the
ledger's hash-chained audit log, never a transfer; :func:`upto_discrepancies`
reads them back.

:func:`resolve_upto` decides the open reservations from the chain, never by
guessing: Permit2's nonce bitmap says whether the permit was spent, the
proxy's logs say where and for how much (posted); an unspent permit past
its deadline can never move money (voided); anything else stays reserved.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Literal

from sqlalchemy import select

from farthing.agents.permits import PermitSettlement, find_settlement, nonce_used, permit_nonce
from farthing.agents.reservations import budget_passed, release, settle
from farthing.ledger import (
    CreateTransferResult,
    PaymentDetails,
    PendingTransfer,
    Transfer,
    audit,
    create_transfers,
    format_transfer_id,
)
from farthing.ledger.payments import reservation
from farthing.ledger.tables import AuditEntry, table_of
from farthing.wallet.address import checksum

if TYPE_CHECKING:
    from farthing.agents.books import AgentBooks
    from farthing.agents.challenge import FiatTerms
    from farthing.wallet.chain import Chain

__all__ = [
    "DISCREPANCY_PREFIX",
    "UPTO_PAYMENT",
    "Ceiling",
    "Discrepancy",
    "OpenCeiling",
    "UptoResolution",
    "UptoTransferCode",
    "find_open_ceiling",
    "open_ceilings",
    "post_settled",
    "record_discrepancy",
    "reserve_ceiling",
    "resolve_upto",
    "upto_discrepancies",
]

log = logging.getLogger("farthing.agents")

DISCREPANCY_PREFIX: Final = "discrepancy_upto_"
_DETAIL_CHARS_MAX: Final = 512


class UptoTransferCode(IntEnum):
    """The transfer code of an ``upto`` reservation.

    Codes are one space across every book a ledger database may hold: the
    agents' channels use 16-19 and the merchant's channel books 20-22.
    """

    UPTO_PAYMENT = 24


UPTO_PAYMENT: Final = UptoTransferCode.UPTO_PAYMENT

_transfers = table_of(Transfer)
_pending = table_of(PendingTransfer)
_audit = table_of(AuditEntry)


@dataclass(frozen=True, slots=True)
class Ceiling:
    """An ``upto`` payment about to be signed: everything its reservation records."""

    payment_id: int
    payer: str
    pay_to: str
    ceiling: int
    resource: str
    valid_after: int
    deadline: int
    task_id: str | None = None
    purpose: str | None = None
    fiat: FiatTerms | None = None


@dataclass(frozen=True, slots=True)
class OpenCeiling:
    """An open ``upto`` reservation, as the books tell it."""

    payment_id: int
    payer: str | None
    valid_after: int
    deadline: int


class _Refused(Exception):
    """Rolls the reservation's database transaction back; never leaves this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reserve_ceiling(books: AgentBooks, intent: Ceiling) -> str:
    """Reserve the ceiling: ``"ok"``, ``"exists"`` (a retry), or the first budget it would pass."""
    fiat = intent.fiat
    details = PaymentDetails(
        network=books.asset.network,
        token_address=books.asset.address,
        payer_address=intent.payer,
        payee_address=intent.pay_to,
        resource=intent.resource[:2048],
        task_id=intent.task_id,
        purpose=(intent.purpose or "")[:2048] or None,
        fiat_rate=fiat.rate if fiat else None,
        fiat_currency=fiat.currency if fiat else None,
        valid_after=intent.valid_after,
        valid_before=intent.deadline,
    )
    books.ensure()
    try:
        with books.database.write() as session:
            payee = books.ensure_payee(session, intent.pay_to)
            event = reservation(
                payment_id=intent.payment_id,
                budget_account_id=books.budget_account_id,
                payee_account_id=payee,
                amount=intent.ceiling,
                ledger=books.ledger,
                payment=details,
                code=UPTO_PAYMENT,
            )
            (result,) = create_transfers(session=session, transfers=[event])
            if result is not CreateTransferResult.OK:
                return str(result)
            passed = budget_passed(session, books, intent.task_id)
            if passed is not None:
                raise _Refused(passed)
    except _Refused as refused:
        return refused.reason
    return "ok"


def post_settled(books: AgentBooks, payment_id: int, found: PermitSettlement) -> str:
    """Post what moved (at most the reservation, the rest released); void it when nothing moved."""
    if found.amount == 0:  # a settlement of zero: the permit is spent, nothing was paid
        return release(books, payment_id)
    return settle(
        books,
        payment_id,
        tx_hash=found.tx_hash,
        block_number=found.block_number,
        amount=found.amount,
    )


def find_open_ceiling(
    books: AgentBooks, *, task_id: str | None, resource: str, pay_to: str, ceiling: int
) -> OpenCeiling | None:
    """An open ``upto`` reservation for the same purchase: its permit may already be out there."""
    t = _transfers
    query = (
        select(t.c.id, t.c.payer_address, t.c.valid_after, t.c.valid_before)
        .join(_pending, _pending.c.transfer_id == t.c.id)
        .where(
            t.c.debit_account_id == books.budget_account_id,
            t.c.code == int(UPTO_PAYMENT),
            t.c.resource == resource[:2048],
            t.c.payee_address == pay_to.lower(),
            t.c.amount == ceiling,
        )
    )
    query = query.where(t.c.task_id.is_(None) if task_id is None else t.c.task_id == task_id)
    with books.database.read() as session:
        row = session.execute(query.order_by(t.c.timestamp_ns.desc()).limit(1)).first()
    if row is None:
        return None
    return OpenCeiling(
        int(row.id), row.payer_address, int(row.valid_after or 0), int(row.valid_before or 0)
    )


def open_ceilings(books: AgentBooks) -> list[OpenCeiling]:
    """Every open ``upto`` reservation of this agent, oldest first."""
    t = _transfers
    query = (
        select(t.c.id, t.c.payer_address, t.c.valid_after, t.c.valid_before)
        .join(_pending, _pending.c.transfer_id == t.c.id)
        .where(t.c.debit_account_id == books.budget_account_id, t.c.code == int(UPTO_PAYMENT))
        .order_by(t.c.timestamp_ns)
    )
    with books.database.read() as session:
        return [
            OpenCeiling(
                int(r.id), r.payer_address, int(r.valid_after or 0), int(r.valid_before or 0)
            )
            for r in session.execute(query)
        ]


# ------------------------------------------------------------------ discrepancies


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """What a seller claimed that the chain does not show, as the audit log keeps it."""

    kind: str  # e.g. settled_amount_mismatch
    payment_id: int
    claimed: str | None  # the amount the seller claimed, as a decimal string
    detail: str
    timestamp_ns: int


def record_discrepancy(
    books: AgentBooks, payment_id: int, kind: str, claimed: int | None, detail: str
) -> None:
    """Append ``discrepancy_upto_<kind>`` about one payment to the ledger's audit log."""
    log.warning("upto payment %s: %s (%s)", format_transfer_id(payment_id), kind, detail)
    payload = {
        "agent_id": books.agent_id,
        "claimed": None if claimed is None else str(claimed),
        "detail": detail[:_DETAIL_CHARS_MAX],
    }
    with books.database.write() as session:
        head = audit.lock_head(session)
        audit.append(
            session,
            head,
            [(DISCREPANCY_PREFIX + kind, format_transfer_id(payment_id), payload)],
            timestamp_ns=time.time_ns(),
        )


def upto_discrepancies(books: AgentBooks) -> list[Discrepancy]:
    """Every ``upto`` discrepancy this agent's books recorded, oldest first."""
    a = _audit.c
    query = (
        select(a.kind, a.subject, a.payload, a.timestamp_ns)
        .where(a.kind.like(DISCREPANCY_PREFIX + "%"))
        .order_by(a.sequence)
    )
    out: list[Discrepancy] = []
    with books.database.read() as session:
        for kind, subject, payload, timestamp_ns in session.execute(query):
            data = json.loads(payload)
            if data.get("agent_id") != books.agent_id:
                continue
            out.append(
                Discrepancy(
                    kind=kind[len(DISCREPANCY_PREFIX) :],
                    payment_id=int(subject, 16),
                    claimed=data.get("claimed"),
                    detail=data.get("detail") or "",
                    timestamp_ns=int(timestamp_ns),
                )
            )
    return out


# ------------------------------------------------------------------ resolving from the chain


@dataclass(frozen=True, slots=True)
class UptoResolution:
    """What became of one open ``upto`` reservation."""

    payment_id: int
    action: Literal["posted", "voided", "pending"]
    result: str  # the ledger's result, or why it is still pending
    tx_hash: str | None = None


def resolve_upto(
    books: AgentBooks,
    chain: Chain,
    *,
    payer: str,
    from_block: int = 0,
    now_s: int | None = None,
) -> list[UptoResolution]:
    """Resolve each open ``upto`` reservation of ``payer`` from the chain; see the module doc."""
    now = chain.timestamp() if now_s is None else now_s
    out: list[UptoResolution] = []
    for open_ in open_ceilings(books):
        payment_id, owner = open_.payment_id, open_.payer
        if owner is None or owner.lower() != payer.lower():
            out.append(UptoResolution(payment_id, "pending", "another_payer"))
            continue
        nonce = permit_nonce(payment_id, checksum(owner))
        if not nonce_used(chain, owner, nonce):
            if open_.deadline < now:
                out.append(UptoResolution(payment_id, "voided", release(books, payment_id)))
            else:
                out.append(UptoResolution(payment_id, "pending", "permit_window_open"))
            continue
        found = find_settlement(
            chain, owner=owner, nonce=nonce, token=books.asset.address, from_block=from_block
        )
        if found is None:
            out.append(UptoResolution(payment_id, "pending", "used_outside_scanned_blocks"))
            continue
        action: Literal["posted", "voided"] = "voided" if found.amount == 0 else "posted"
        result = post_settled(books, payment_id, found)
        out.append(UptoResolution(payment_id, action, result, found.tx_hash))
    return out
