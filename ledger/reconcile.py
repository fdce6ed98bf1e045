"""Reconciliation of the books with the chain: the seam and the matching rules.

The chain side is a Protocol, ``ChainView``, so the ledger never imports a
chain client: ``farthing.wallet`` (memory chain, anvil or RPC) provides the
real one, and tests provide a fake. What the ledger needs from a chain is
small: the token's ``Transfer`` logs touching our addresses over a block
range, and whether an EIP-3009 authorization nonce has been used.

``find_breaks`` is pure. It matches posted payments to ``Transfer`` logs by
transaction hash and both addresses, and reports breaks by kind:

* ``missing_on_chain``: the books say it settled; the chain has no such log
  (a reorg dropped the settlement, or it was never there). A settlement
  booked in a block above the chain's head is missing too: that block no
  longer exists;
* ``missing_in_ledger``: the chain moved our money; the books never posted it;
* ``amount_mismatch``: both agree it happened, not on how much;
* ``pending_past_timeout``: a reservation whose authorization window has
  closed. Its fate is read from the chain (``authorization_state``), never
  guessed: a used nonce means post it, an unused one means void it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from farthing.ledger.codes import AccountCode
from farthing.ledger.flags import TransferFlags
from farthing.ledger.ids import format_transfer_id
from farthing.ledger.inputs import derived_id
from farthing.ledger.repository import lookup_transfers
from farthing.ledger.tables import Account, PendingTransfer, Transfer, table_of

__all__ = [
    "OWN_ACCOUNT_CODES",
    "Break",
    "BreakKind",
    "ChainView",
    "LedgerPayment",
    "TokenTransferEvent",
    "find_breaks",
    "in_block_range",
    "load_payments",
    "other_scopes",
    "own_addresses",
    "rebook_id",
    "reversal_id",
]

_transfers = table_of(Transfer)
_pending = table_of(PendingTransfer)
_accounts = table_of(Account)

# Accounts that hold our own money: an agent's budget, a merchant's revenue.
# The address on their side of a transfer is ours; the other side is a
# counterparty, whose dealings with third parties are none of our books.
OWN_ACCOUNT_CODES = (int(AccountCode.BUDGET), int(AccountCode.REVENUE))


@dataclass(frozen=True, slots=True)
class TokenTransferEvent:
    """One ERC-20 ``Transfer(from, to, value)`` log."""

    tx_hash: str
    log_index: int
    from_address: str
    to_address: str
    value: int
    block_number: int

    def __post_init__(self) -> None:
        if type(self.value) is not int or self.value < 0:
            raise ValueError("value must be a non-negative int of atomic units")
        for name in ("tx_hash", "from_address", "to_address"):
            object.__setattr__(self, name, getattr(self, name).lower())


class ChainView(Protocol):
    """What reconciliation needs to know from a chain."""

    def token_transfers(
        self,
        *,
        token_address: str,
        addresses: Collection[str],
        from_block: int,
        to_block: int,
    ) -> Sequence[TokenTransferEvent]:
        """``Transfer`` logs of the token with ``from`` or ``to`` in ``addresses``."""
        ...

    def authorization_state(self, *, authorizer: str, nonce: str) -> bool:
        """True when ``nonce`` of ``authorizer`` has been used (EIP-3009)."""
        ...


@dataclass(frozen=True, slots=True)
class LedgerPayment:
    """A payment as the books see it: posted (with its settlement) or still pending."""

    transfer_id: int
    posted: bool
    amount: int
    payer_address: str | None
    payee_address: str | None
    tx_hash: str | None = None
    block_number: int | None = None
    authorization_nonce: str | None = None
    valid_before: int | None = None


class BreakKind(StrEnum):
    MISSING_ON_CHAIN = "missing_on_chain"
    MISSING_IN_LEDGER = "missing_in_ledger"
    AMOUNT_MISMATCH = "amount_mismatch"
    PENDING_PAST_TIMEOUT = "pending_past_timeout"


@dataclass(frozen=True, slots=True)
class Break:
    """One disagreement between the books and the chain."""

    kind: BreakKind
    detail: str
    transfer_id: int | None = None
    tx_hash: str | None = None
    ledger_amount: int | None = None
    chain_amount: int | None = None
    # When known: "post" or "void" for pending_past_timeout, "reverse" or
    # "rebook" for missing_on_chain (see farthing.ledger.reconciliation).
    resolution: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """The break as JSON: amounts as decimal strings, the transfer id in its display form."""
        return {
            "kind": self.kind.value,
            "detail": self.detail,
            "transfer_id": None
            if self.transfer_id is None
            else format_transfer_id(self.transfer_id),
            "tx_hash": self.tx_hash,
            "ledger_amount": None if self.ledger_amount is None else str(self.ledger_amount),
            "chain_amount": None if self.chain_amount is None else str(self.chain_amount),
            "resolution": self.resolution,
        }


def reversal_id(payment_id: int) -> int:
    """The id of the correcting transfer that reverses a payment the chain does not have."""
    return derived_id(b"farthing.ledger.reversal:", payment_id.to_bytes(16, "big"))


def rebook_id(payment_id: int) -> int:
    """The id of the correcting transfer that books a reversed payment's real transaction."""
    return derived_id(b"farthing.ledger.rebook:", payment_id.to_bytes(16, "big"))


def find_breaks(
    *,
    payments: Sequence[LedgerPayment],
    events: Sequence[TokenTransferEvent],
    chain: ChainView,
    from_block: int,
    to_block: int,
    now_s: int,
    head_block: int | None = None,
) -> list[Break]:
    """Every break between ``payments`` and the ``events`` of one block range.

    ``head_block`` is the chain's head: a settlement booked above it is in a
    block the chain no longer has (a reorg), so it is reported however the
    range was chosen.
    """
    by_key: dict[tuple[str, str, str], list[TokenTransferEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.block_number, e.log_index)):
        by_key[(event.tx_hash, event.from_address, event.to_address)].append(event)
    matched: set[tuple[str, int]] = set()
    breaks: list[Break] = []
    for payment in payments:
        if payment.posted:
            breaks.extend(
                _match_posted(payment, by_key, matched, chain, from_block, to_block, head_block)
            )
        elif payment.valid_before is not None and payment.valid_before <= now_s:
            breaks.append(_past_timeout(payment, chain))
    for event in events:
        if (event.tx_hash, event.log_index) not in matched:
            breaks.append(
                Break(
                    BreakKind.MISSING_IN_LEDGER,
                    f"{event.value} from {event.from_address} to {event.to_address} "
                    f"in block {event.block_number} has no posted transfer",
                    tx_hash=event.tx_hash,
                    chain_amount=event.value,
                )
            )
    return breaks


def in_block_range(
    payment: LedgerPayment, from_block: int, to_block: int, head_block: int | None = None
) -> bool:
    """Whether a run over ``[from_block, to_block]`` checks this payment.

    A pending payment and a settlement without a block are always in range; a
    settlement booked above the chain's head is too (its block is gone).
    """
    block = payment.block_number
    if not payment.posted or block is None:
        return True
    if head_block is not None and block > head_block:
        return True
    return from_block <= block <= to_block


def _match_posted(
    payment: LedgerPayment,
    by_key: dict[tuple[str, str, str], list[TokenTransferEvent]],
    matched: set[tuple[str, int]],
    chain: ChainView,
    from_block: int,
    to_block: int,
    head_block: int | None,
) -> list[Break]:
    block = payment.block_number
    beyond_head = block is not None and head_block is not None and block > head_block
    if not in_block_range(payment, from_block, to_block, head_block):
        return []  # another range's business; the run counts it as unchecked
    if payment.tx_hash is None:
        return [
            Break(
                BreakKind.MISSING_ON_CHAIN,
                "posted without a transaction hash",
                transfer_id=payment.transfer_id,
                ledger_amount=payment.amount,
            )
        ]
    key = (payment.tx_hash, payment.payer_address or "", payment.payee_address or "")
    candidates = [e for e in by_key.get(key, []) if (e.tx_hash, e.log_index) not in matched]
    if not candidates:
        if payment.block_number is None and _nonce_used(payment, chain):
            return []  # it happened, just outside the scanned range
        return [
            Break(
                BreakKind.MISSING_ON_CHAIN,
                f"no Transfer log from {payment.payer_address} to {payment.payee_address} "
                f"in {payment.tx_hash}"
                + (
                    f" (booked in block {block}, above the head {head_block})"
                    if beyond_head
                    else ""
                ),
                transfer_id=payment.transfer_id,
                tx_hash=payment.tx_hash,
                ledger_amount=payment.amount,
            )
        ]
    event = next((e for e in candidates if e.value == payment.amount), candidates[0])
    matched.add((event.tx_hash, event.log_index))
    if event.value == payment.amount:
        return []
    return [
        Break(
            BreakKind.AMOUNT_MISMATCH,
            f"the books posted {payment.amount}, the chain moved {event.value}",
            transfer_id=payment.transfer_id,
            tx_hash=payment.tx_hash,
            ledger_amount=payment.amount,
            chain_amount=event.value,
        )
    ]


def _nonce_used(payment: LedgerPayment, chain: ChainView) -> bool:
    if payment.payer_address is None or payment.authorization_nonce is None:
        return False
    return chain.authorization_state(
        authorizer=payment.payer_address, nonce=payment.authorization_nonce
    )


def _past_timeout(payment: LedgerPayment, chain: ChainView) -> Break:
    if payment.payer_address is None or payment.authorization_nonce is None:
        resolution, why = None, "no authorization nonce recorded, so the chain cannot say"
    elif _nonce_used(payment, chain):
        resolution, why = "post", "the authorization was used on chain: post it"
    else:
        resolution, why = "void", "the authorization was never used and has expired: void it"
    return Break(
        BreakKind.PENDING_PAST_TIMEOUT,
        f"still pending after validBefore {payment.valid_before}; {why}",
        transfer_id=payment.transfer_id,
        ledger_amount=payment.amount,
        resolution=resolution,
    )


def _is_payment() -> ColumnElement[bool]:
    """A posted payment, a single-phase transfer, or a reservation still open."""
    t = _transfers
    posted = t.c.flags.op("&")(int(TransferFlags.POST_PENDING_TRANSFER)) != 0
    single_phase = (
        t.c.flags.op("&")(
            int(
                TransferFlags.PENDING
                | TransferFlags.VOID_PENDING_TRANSFER
                | TransferFlags.EXPIRE_PENDING_TRANSFER
                | TransferFlags.POST_PENDING_TRANSFER
            )
        )
        == 0
    )
    is_open = t.c.id.in_(select(_pending.c.transfer_id))
    return or_(
        posted, single_phase, and_(t.c.flags.op("&")(int(TransferFlags.PENDING)) != 0, is_open)
    )


def load_payments(*, session: Session, network: str, token_address: str) -> list[LedgerPayment]:
    """Posted and still-pending payments of one token on one network."""
    token = token_address.lower()
    t = _transfers
    query = select(t).where(t.c.network == network, t.c.token_address == token, _is_payment())
    loaded: list[LedgerPayment] = []
    for row in session.execute(query.order_by(t.c.timestamp_ns)):
        # A posted two-phase payment is known by its payment id (the pending
        # transfer's id), the id the payer saved before signing.
        loaded.append(
            LedgerPayment(
                transfer_id=row.pending_id if row.pending_id is not None else row.id,
                posted=not row.flags & TransferFlags.PENDING,
                amount=row.amount,
                payer_address=row.payer_address,
                payee_address=row.payee_address,
                tx_hash=row.tx_hash,
                block_number=row.block_number,
                authorization_nonce=row.authorization_nonce,
                valid_before=row.valid_before,
            )
        )
    # A reversed payment and its reversal cancel out: neither is expected on
    # chain (a rebook, if any, carries the real transaction and is matched).
    reversals = {reversal_id(p.transfer_id): p.transfer_id for p in loaded}
    found = lookup_transfers(session=session, ids=list(reversals))
    done = {reversals[r.id] for r in found} | {r.id for r in found}
    return [p for p in loaded if p.transfer_id not in done]


def other_scopes(
    *, session: Session, network: str, token_address: str
) -> list[tuple[str, str, int]]:
    """``(network, token, count)`` of the payments booked in any other token or network.

    A run checks one token on one network; these are what it leaves out.
    Transfers without token facts (channel charges) are not token transfers
    and are not counted.
    """
    t = _transfers
    query = (
        select(t.c.network, t.c.token_address, func.count())
        .where(
            t.c.network.is_not(None),
            t.c.token_address.is_not(None),
            or_(t.c.network != network, t.c.token_address != token_address.lower()),
            _is_payment(),
        )
        .group_by(t.c.network, t.c.token_address)
        .order_by(t.c.network, t.c.token_address)
    )
    return [(str(n), str(a), int(c)) for n, a, c in session.execute(query)]


def own_addresses(*, session: Session, network: str, token_address: str) -> set[str]:
    """The addresses the books hold money at: the budget's or revenue account's side.

    A payment debits an agent's budget, so its payer is ours; a deposit
    credits the budget, so its payee is ours; revenue credits a merchant's
    revenue account, so its payee is ours.
    """
    t, a = _transfers, _accounts
    token = token_address.lower()
    found: set[str] = set()
    for side, column in (
        (t.c.debit_account_id, t.c.payer_address),
        (t.c.credit_account_id, t.c.payee_address),
    ):
        query = (
            select(column)
            .distinct()
            .join(a, a.c.id == side)
            .where(
                t.c.network == network,
                t.c.token_address == token,
                a.c.code.in_(OWN_ACCOUNT_CODES),
                column.is_not(None),
            )
        )
        found.update(str(value).lower() for value in session.scalars(query))
    return found
