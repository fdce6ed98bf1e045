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

It resolves a settlement that is ``missing_on_chain`` (a reorg dropped it
after it was booked) the same way, from the chain's record of the
authorization. Transfers are immutable, so the books are corrected, never
edited:

* the authorization was used by another transaction (the dropped settlement
  was resubmitted, or re-mined under a new hash) → ``rebook``: a reversal and
  a rebooking with the real transaction, both correcting transfers;
* it was cancelled, or is unused and its window has closed, so it can never
  move money → ``reverse``: a correcting transfer in the opposite direction
  (id ``reversal_id(payment_id)``) takes the payment back out of the books;
* it is unused and still valid → left unresolved: it may yet be executed
  (once; the EIP-3009 nonce sees to that), so the run waits for the chain
  rather than guess.
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
    in_block_range,
    load_payments,
    other_scopes,
    own_addresses,
    rebook_id,
    reversal_id,
)
from farthing.ledger.repository import create_transfers, expire_pending, lookup_transfers
from farthing.ledger.results import CreateTransferResult

__all__ = ["ReconciliationReport", "Resolution", "Unchecked", "correction_id", "reconcile"]

UncheckedReason = Literal["other_network", "other_token", "outside_block_range"]
ResolutionAction = Literal["post", "void", "correct", "reverse", "rebook", "unresolved"]
_RESOLVABLE = (BreakKind.PENDING_PAST_TIMEOUT, BreakKind.MISSING_ON_CHAIN)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a run did about one payment: pending past its window, or missing on chain."""

    transfer_id: int
    action: ResolutionAction
    result: str  # the ledger's snake_case result, or why nothing was done
    tx_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Unchecked:
    """Payments in the books that a run did not check, and why: nothing is known of them."""

    reason: UncheckedReason
    count: int
    network: str
    token_address: str
    detail: str


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
    # Payments the books hold that this run did not check (another network,
    # another token, or booked outside the block range).
    unchecked: tuple[Unchecked, ...] = ()

    @property
    def unchecked_count(self) -> int:
        return sum(item.count for item in self.unchecked)

    @property
    def agrees(self) -> bool:
        """The books and the chain agree: every payment the books hold was checked, none broke."""
        return not self.unresolved_breaks and not self.unchecked

    @property
    def unresolved_breaks(self) -> tuple[Break, ...]:
        """Breaks still standing after the resolutions of this run."""
        done = {r.transfer_id for r in self.resolutions if r.action != "unresolved"}
        # A rebooked payment's real transaction was the chain's side of the same break.
        rebooked = {r.tx_hash for r in self.resolutions if r.action == "rebook" and r.tx_hash}
        return tuple(
            b
            for b in self.breaks
            if not (b.kind in _RESOLVABLE and b.transfer_id in done)
            and not (b.kind is BreakKind.MISSING_IN_LEDGER and b.tx_hash in rebooked)
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
    head = view.head_block()
    last = head if to_block is None else to_block
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
        elsewhere = other_scopes(
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
        head_block=head,
    )
    by_id = {p.transfer_id: p for p in payments}
    refined: list[Break] = []
    resolutions: list[Resolution] = []
    for item in breaks:
        if item.kind not in _RESOLVABLE or item.transfer_id not in by_id:
            refined.append(item)
            continue
        payment = by_id[item.transfer_id]
        if item.kind is BreakKind.MISSING_ON_CHAIN:
            action, tx_hash, block, why = _decide_missing(view, payment, from_block, last, now)
            refined.append(
                dataclasses.replace(
                    item,
                    detail=f"{item.detail}; {why}",
                    resolution=None if action == "unresolved" else action,
                )
            )
            if resolve:
                resolutions.append(_correct(database, payment, action, tx_hash, block, why))
            continue
        action, tx_hash, block = _decide(view, payment, from_block, last)
        refined.append(
            dataclasses.replace(item, resolution=None if action == "unresolved" else action)
        )
        if resolve:
            resolutions.append(_apply(database, payment, action, tx_hash, block))
    outside = sum(1 for p in payments if not in_block_range(p, from_block, last, head))
    return ReconciliationReport(
        network=view.network,
        token_address=view.token_address,
        from_block=from_block,
        to_block=last,
        payments_checked=len(payments) - outside,
        addresses_scanned=len(ours),
        breaks=tuple(refined),
        resolutions=tuple(resolutions),
        unchecked=_unchecked(view, elsewhere, outside, from_block, last),
    )


def _unchecked(
    view: TokenChainView,
    elsewhere: list[tuple[str, str, int]],
    outside: int,
    from_block: int,
    to_block: int,
) -> tuple[Unchecked, ...]:
    items: list[Unchecked] = []
    if outside:
        detail = (
            f"{outside} payment(s) booked outside blocks {from_block}..{to_block}: "
            "widen --from-block/--to-block to check them"
        )
        items.append(
            Unchecked("outside_block_range", outside, view.network, view.token_address, detail)
        )
    for network, token, count in elsewhere:
        if network != view.network:
            detail = (
                f"{count} payment(s) on {network} (another network), of token {token}: "
                "run again with that chain's --rpc-url and --token"
            )
            items.append(Unchecked("other_network", count, network, token, detail))
        else:
            detail = (
                f"{count} payment(s) of token {token} (another token) on {network}: "
                f"run again with --token {token}"
            )
            items.append(Unchecked("other_token", count, network, token, detail))
    return tuple(items)


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


def _decide_missing(
    view: TokenChainView, payment: LedgerPayment, from_block: int, to_block: int, now: int
) -> tuple[ResolutionAction, str | None, int | None, str]:
    """What the chain says of a booked settlement it does not have, and why."""
    if payment.payer_address is None or payment.authorization_nonce is None:
        return "unresolved", None, None, "no authorization nonce recorded, so the chain cannot say"
    outcome = view.authorization_outcome(
        authorizer=payment.payer_address,
        nonce=payment.authorization_nonce,
        from_block=from_block,
        to_block=to_block,
    )
    if outcome.state == "used":
        if outcome.tx_hash is not None and outcome.tx_hash.lower() != (payment.tx_hash or ""):
            why = f"the authorization was used in {outcome.tx_hash}: rebook it there"
            return "rebook", outcome.tx_hash, outcome.block_number, why
        return "unresolved", None, None, "the authorization was used where booked: scan again"
    if outcome.state == "canceled":
        return "reverse", None, None, "the authorization was cancelled: reverse it"
    if outcome.state == "unused":
        if payment.valid_before is not None and payment.valid_before <= now:
            why = "the authorization is unused and has expired, so it never paid: reverse it"
            return "reverse", None, None, why
        why = (
            "the authorization is unused but valid until "
            f"{payment.valid_before}: it may still be executed once; run again after that"
        )
        return "unresolved", None, None, why
    return "unresolved", None, None, "the authorization was spent outside the scanned blocks"


def _correct(
    database: LedgerDatabase,
    payment: LedgerPayment,
    action: ResolutionAction,
    tx_hash: str | None,
    block: int | None,
    why: str,
) -> Resolution:
    """Reverse a booked settlement the chain does not have; rebook it if it moved elsewhere."""
    pid = payment.transfer_id
    if action not in ("reverse", "rebook"):
        return Resolution(pid, "unresolved", "chain_outcome_unknown")
    with database.write() as session:
        # A two-phase payment's accounts are on its pending transfer, whose id
        # is the payment id; a single-phase one (revenue) is the transfer itself.
        (booked,) = lookup_transfers(session=session, ids=[pid])
        inherited = {name: getattr(booked, name) for name in PAYMENT_COLUMNS}
        # The money goes back the other way, and so do the addresses: the
        # side that is ours (own_addresses) stays ours, the payer stays theirs.
        facts = {
            **inherited,
            "payer_address": inherited["payee_address"],
            "payee_address": inherited["payer_address"],
            "tx_hash": payment.tx_hash,
            "block_number": payment.block_number,
            "purpose": f"reversal: {why}"[:2048],
        }
        reversal = NewTransfer(
            id=reversal_id(pid),
            debit_account_id=booked.credit_account_id,
            credit_account_id=booked.debit_account_id,
            amount=payment.amount,
            ledger=booked.ledger,
            code=TransferCode.CORRECTION,
            payment=PaymentDetails(**facts),
        )
        (reversed_,) = create_transfers(session=session, transfers=[reversal])
        if action == "reverse" or not reversed_.succeeded:
            return Resolution(pid, action, str(reversed_))
        # Only once the reversal stands, so the payment is never in the books twice.
        rebooked = {**inherited, "tx_hash": tx_hash, "block_number": block}
        rebook = NewTransfer(
            id=rebook_id(pid),
            debit_account_id=booked.debit_account_id,
            credit_account_id=booked.credit_account_id,
            amount=payment.amount,
            ledger=booked.ledger,
            code=TransferCode.CORRECTION,
            payment=PaymentDetails(**rebooked),
        )
        (result,) = create_transfers(session=session, transfers=[rebook])
    return Resolution(pid, action, str(result), tx_hash)


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
