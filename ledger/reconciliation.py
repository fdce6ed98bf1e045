"""A reconciliation run: read the books and the chain, report breaks, resolve the unknown.

``reconcile`` loads the payments of one token, scans the token's ``Transfer``
logs for our own addresses (those on the side of an agent's budget or a
merchant's revenue account, plus any the caller adds) over a block range, and
reports every break by kind (see ``farthing.ledger.reconcile``).

With ``resolve=True`` it also settles the books for pending payments whose
authorization window has closed, from what the chain says and never by
guessing: the token's ``AuthorizationUsed`` log means the money moved, so the
reservation is posted with that transaction; a cancelled or unused
authorization means it did not, so the reservation is voided. If the
reservation had already expired in the books while the money did move, a
correcting transfer books it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from farthing.ledger.chainview import TokenChainView
from farthing.ledger.codes import TransferCode
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.inputs import PAYMENT_COLUMNS, NewTransfer, PaymentDetails, derived_id
from farthing.ledger.payments import release_payment, settle_payment
from farthing.ledger.reconcile import (
    Break,
    BreakKind,
    LedgerPayment,
    find_breaks,
    load_payments,
    own_addresses,
)
from farthing.ledger.repository import create_transfers, expire_pending, lookup_transfers
from farthing.ledger.results import CreateTransferResult

__all__ = ["ReconciliationReport", "Resolution", "correction_id", "reconcile"]

ResolutionAction = Literal["post", "void", "correct", "unresolved"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a run did about one pending payment whose window had closed."""

    transfer_id: int
    action: ResolutionAction
    result: str  # the ledger's snake_case result, or why nothing was done
    tx_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """The breaks found in one block range, and what was resolved."""

    network: str
    token_address: str
    from_block: int
    to_block: int
    payments_checked: int
    addresses_scanned: int
    breaks: tuple[Break, ...]
    resolutions: tuple[Resolution, ...]

    @property
    def unresolved_breaks(self) -> tuple[Break, ...]:
        """Breaks still standing after the resolutions of this run."""
        done = {r.transfer_id for r in self.resolutions if r.action != "unresolved"}
        return tuple(
            b
            for b in self.breaks
            if not (b.kind is BreakKind.PENDING_PAST_TIMEOUT and b.transfer_id in done)
        )

    def counts(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in BreakKind}
        for item in self.breaks:
            counts[item.kind.value] += 1
        return counts


def correction_id(payment_id: int) -> int:
    """The id of the correcting transfer that books a payment after its reservation expired."""
    return derived_id(b"farthing.ledger.correction:", payment_id.to_bytes(16, "big"))


def reconcile(
    database: LedgerDatabase,
    view: TokenChainView,
    *,
    from_block: int = 0,
    to_block: int | None = None,
    addresses: tuple[str, ...] = (),
    resolve: bool = False,
    now_s: int | None = None,
) -> ReconciliationReport:
    """Check the books against the chain over ``[from_block, to_block]``."""
    last = view.head_block() if to_block is None else to_block
    if from_block < 0 or last < from_block:
        raise ValueError(f"bad block range {from_block}..{last}")
    # Authorization windows are measured on the chain's clock, which on the
    # memory chain runs ahead of the wall clock.
    now = view.chain.timestamp() if now_s is None else now_s
    with database.read() as session:
        payments = load_payments(
            session=session, network=view.network, token_address=view.token_address
        )
        owned = own_addresses(
            session=session, network=view.network, token_address=view.token_address
        )
    if not owned:  # books without budget or revenue accounts: every named address
        for payment in payments:
            owned.update(a for a in (payment.payer_address, payment.payee_address) if a)
    ours = owned | {a.lower() for a in addresses}
    events = view.token_transfers(
        token_address=view.token_address, addresses=ours, from_block=from_block, to_block=last
    )
    breaks = find_breaks(
        payments=payments,
        events=events,
        chain=view,
        from_block=from_block,
        to_block=last,
        now_s=now,
    )
    by_id = {p.transfer_id: p for p in payments}
    refined: list[Break] = []
    resolutions: list[Resolution] = []
    for item in breaks:
        if item.kind is not BreakKind.PENDING_PAST_TIMEOUT or item.transfer_id is None:
            refined.append(item)
            continue
        payment = by_id[item.transfer_id]
        action, tx_hash, block = _decide(view, payment, from_block, last)
        refined.append(
            dataclasses.replace(item, resolution=None if action == "unresolved" else action)
        )
        if resolve:
            resolutions.append(_apply(database, payment, action, tx_hash, block))
    return ReconciliationReport(
        network=view.network,
        token_address=view.token_address,
        from_block=from_block,
        to_block=last,
        payments_checked=len(payments),
        addresses_scanned=len(ours),
        breaks=tuple(refined),
        resolutions=tuple(resolutions),
    )


def _decide(
    view: TokenChainView, payment: LedgerPayment, from_block: int, to_block: int
) -> tuple[ResolutionAction, str | None, int | None]:
    if payment.payer_address is None or payment.authorization_nonce is None:
        return "unresolved", None, None
    outcome = view.authorization_outcome(
        authorizer=payment.payer_address,
        nonce=payment.authorization_nonce,
        from_block=from_block,
        to_block=to_block,
    )
    if outcome.state == "used":
        return "post", outcome.tx_hash, outcome.block_number
    if outcome.state in ("canceled", "unused"):
        return "void", None, None
    return "unresolved", None, None


def _apply(
    database: LedgerDatabase,
    payment: LedgerPayment,
    action: ResolutionAction,
    tx_hash: str | None,
    block: int | None,
) -> Resolution:
    pid = payment.transfer_id
    if action == "unresolved":
        return Resolution(pid, "unresolved", "chain_outcome_unknown")
    with database.write() as session:
        if action == "void":
            result = release_payment(session=session, payment_id=pid)
            if result is CreateTransferResult.PENDING_TRANSFER_EXPIRED:
                # The books already let the reservation lapse; sweep it so it
                # is expired on record rather than merely past its time.
                expire_pending(session=session)
                return Resolution(pid, "void", "expired")
            return Resolution(pid, "void", str(result))
        facts = PaymentDetails(tx_hash=tx_hash, block_number=block)
        result = settle_payment(session=session, payment_id=pid, payment=facts)
        if result is not CreateTransferResult.PENDING_TRANSFER_EXPIRED:
            return Resolution(pid, "post", str(result), tx_hash)
        # The money moved after the books let the reservation lapse: book it
        # with a correcting transfer between the same accounts.
        expire_pending(session=session)
        (pending,) = lookup_transfers(session=session, ids=[pid])
        inherited = {name: getattr(pending, name) for name in PAYMENT_COLUMNS}
        facts = PaymentDetails(**{**inherited, "tx_hash": tx_hash, "block_number": block})
        correction = NewTransfer(
            id=correction_id(pid),
            debit_account_id=pending.debit_account_id,
            credit_account_id=pending.credit_account_id,
            amount=pending.amount,
            ledger=pending.ledger,
            code=TransferCode.CORRECTION,
            payment=facts,
        )
        (corrected,) = create_transfers(session=session, transfers=[correction])
        return Resolution(pid, "correct", str(corrected), tx_hash)
