"""Channels in the agent's books: a deposit is locked, not spent; each charge is spent.

An x402 ``batch-settlement`` channel moves money in three steps, and the
books follow each with transfers on the agent's ledger:

==================  ===================================  =======================================
on chain            transfer(s)                          code
==================  ===================================  =======================================
deposit             wallet → escrow(channel)             ``CHANNEL_DEPOSIT`` (16)
a request charged   budget → payee (the spend)           ``CHANNEL_CHARGE`` (17)
                    escrow(channel) → wallet             ``CHANNEL_RELEASE`` (18)
refund, withdrawal  escrow(channel) → wallet             ``CHANNEL_REFUND`` (19)
==================  ===================================  =======================================

* ``escrow(channel)`` (account code 16) is one account per channel: its
  balance (credits − debits) is what the agent still has in that channel's
  escrow, deposited and not yet charged or returned.
* ``wallet`` (account code 17) is one account per agent: the wallet's side of
  every deposit. Its debit balance is the total locked in escrow.
* The **budget account is debited only by charges**, so every budget limit
  (the booked funds, the payment cap, the daily limit, the per-payee cap, the
  task and total budgets) counts charges, never deposits. A deposit is capped
  by what the budget has left, less what is already locked, computed while
  the ledger's write lock is held (:func:`deposit_room`), so processes that
  share a budget cannot lock more than it holds.

A charge is two-phase like an ``exact`` payment: reserved before the voucher
is signed, posted with the seller's ``chargedAmount`` (a smaller amount
releases the rest), voided when the seller refuses the voucher. A deposit is
reserved the same way and posted with the transaction the seller reports.

Charges and releases carry no network or token facts: they are not token
transfers, so the token reconciliation (``farthing ledger reconcile``) does
not look for them; :func:`reconcile_channels` matches them against the
escrow's events instead. Deposits and refunds carry them, with the
transaction hash, so the token reconciliation matches the wallet → collector
and escrow → wallet ``Transfer`` logs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farthing.agents.books import AgentBooks, derived_id
from farthing.agents.reservations import budget_passed, task_spend
from farthing.agents.tables import agent_policy
from farthing.ledger import (
    CreateTransferResult,
    NewAccount,
    NewTransfer,
    PaymentDetails,
    PendingTransfer,
    Transfer,
    TransferFlags,
    create_accounts,
    create_transfers,
    lookup_accounts,
)
from farthing.ledger.flags import NOT_POSTED_FLAGS
from farthing.ledger.payments import reservation, resolution_id
from farthing.ledger.tables import table_of

__all__ = [
    "ChannelAccountCode",
    "ChannelTransferCode",
    "ChargeIntent",
    "DepositAuthorization",
    "OpenDeposit",
    "book_extra_charge",
    "book_refund",
    "booked_charges",
    "booked_sums",
    "deposit_room",
    "escrow_account_id",
    "escrow_balance",
    "locked_total",
    "open_charge",
    "open_deposits",
    "post_charge",
    "post_deposit",
    "reserve_charge",
    "reserve_deposit",
    "void_pending",
    "wallet_account_id",
]

_transfers = table_of(Transfer)
_open = table_of(PendingTransfer)

# A charge or deposit waits at most this long for the seller's answer before
# its reservation may expire; the lease on the channel is shorter.
_HOLD_S: Final = 3_600


class ChannelAccountCode(IntEnum):
    ESCROW = 16  # one per channel: deposited, not yet charged or returned
    WALLET = 17  # one per agent: the wallet's side of deposits and returns


class ChannelTransferCode(IntEnum):
    CHANNEL_DEPOSIT = 16
    CHANNEL_CHARGE = 17
    CHANNEL_RELEASE = 18
    CHANNEL_REFUND = 19


class _Refused(Exception):
    """Rolls a reservation's database transaction back; never leaves this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def escrow_account_id(books: AgentBooks, channel_id: str) -> int:
    return derived_id("channel-escrow", str(books.ledger), channel_id.lower())


def wallet_account_id(books: AgentBooks) -> int:
    return derived_id("channel-wallet", str(books.ledger), books.agent_id)


def _ensure_accounts(session: Session, books: AgentBooks, channel_id: str) -> None:
    results = create_accounts(
        session=session,
        accounts=[
            NewAccount(
                id=wallet_account_id(books),
                ledger=books.ledger,
                code=ChannelAccountCode.WALLET,
                label=f"channel-wallet:{books.agent_id}"[:256],
            ),
            NewAccount(
                id=escrow_account_id(books, channel_id),
                ledger=books.ledger,
                code=ChannelAccountCode.ESCROW,
                label=f"channel-escrow:{channel_id.lower()}",
            ),
        ],
    )
    for result in results:
        if not result.succeeded:
            raise RuntimeError(f"cannot create the channel's accounts: {result}")


def locked_total(session: Session, books: AgentBooks) -> int:
    """Money in escrow (deposited or being deposited) not yet charged or returned."""
    found = lookup_accounts(session=session, ids=[wallet_account_id(books)])
    if not found:
        return 0
    (wallet,) = found
    return (
        wallet.debits_posted
        + wallet.debits_pending
        - wallet.credits_posted
        - wallet.credits_pending
    )


def escrow_balance(books: AgentBooks, channel_id: str) -> int:
    """What the books say is left in one channel's escrow (posted only)."""
    with books.database.read() as session:
        found = lookup_accounts(session=session, ids=[escrow_account_id(books, channel_id)])
    if not found:
        return 0
    return found[0].credits_posted - found[0].debits_posted


def booked_charges(books: AgentBooks, channel_id: str) -> int:
    """What the books have charged on one channel: its releases from escrow."""
    t = _transfers.c
    with books.database.read() as session:
        total = session.execute(
            select(func.coalesce(func.sum(t.amount), 0)).where(
                t.debit_account_id == escrow_account_id(books, channel_id),
                t.code == int(ChannelTransferCode.CHANNEL_RELEASE),
            )
        ).scalar()
    return int(total or 0)


def booked_sums(books: AgentBooks, channel_id: str) -> tuple[int, int, int]:
    """(deposited, returned, charged) on one channel, posted, as the books say."""
    t = _transfers.c
    escrow = escrow_account_id(books, channel_id)
    sums = {}
    with books.database.read() as session:
        for code, side in (
            (ChannelTransferCode.CHANNEL_DEPOSIT, t.credit_account_id),
            (ChannelTransferCode.CHANNEL_REFUND, t.debit_account_id),
            (ChannelTransferCode.CHANNEL_RELEASE, t.debit_account_id),
        ):
            posted = t.flags.op("&")(int(NOT_POSTED_FLAGS)) == 0
            sums[code] = int(
                session.execute(
                    select(func.coalesce(func.sum(t.amount), 0)).where(
                        side == escrow, t.code == int(code), posted
                    )
                ).scalar()
                or 0
            )
    return (
        sums[ChannelTransferCode.CHANNEL_DEPOSIT],
        sums[ChannelTransferCode.CHANNEL_REFUND],
        sums[ChannelTransferCode.CHANNEL_RELEASE],
    )


def deposit_room(
    session: Session, books: AgentBooks, task_id: str | None, uncovered: int = 0
) -> int:
    """The most a new deposit may lock: what every budget has left, less what is already locked.

    ``uncovered`` is the part of the caller's own charge, already reserved
    against the budgets, that the escrow does not cover yet: funding it
    commits nothing more, so it is added back (before the floor at zero, or a
    concurrent buyer's deposit would be counted twice).

    Call it in the write session that reserves the deposit: the ledger's lock
    is then held, so another process's deposit is either counted or waits.
    """
    (budget,) = lookup_accounts(session=session, ids=[books.budget_account_id])
    used = budget.debits_posted + budget.debits_pending
    room = [budget.credits_posted - used]
    total = session.execute(
        select(agent_policy.c.total_budget).where(agent_policy.c.agent_id == books.agent_id)
    ).scalar()
    if total is not None:
        room.append(int(total) - used)
    if task_id is not None:
        task_budget = books.task_budget(session, task_id)
        if task_budget is not None:
            room.append(task_budget - task_spend(session, books.budget_account_id, task_id))
    return max(0, min(room) - locked_total(session, books) + uncovered)


@dataclass(frozen=True, slots=True)
class DepositAuthorization:
    """The ERC-3009 terms a deposit is signed with, stored with its reservation."""

    nonce: str  # 0x + 32 bytes of hex: deposit_nonce(channel id, salt)
    payer: str
    valid_after: int
    valid_before: int


def _deposit_details(books: AgentBooks, auth: DepositAuthorization | None) -> PaymentDetails:
    # No network or token while pending: the token reconciliation looks at a
    # deposit once it is posted with its transaction, as before.
    if auth is None:
        return PaymentDetails(purpose="channel deposit")
    return PaymentDetails(
        authorization_nonce=auth.nonce,
        payer_address=auth.payer,
        valid_after=auth.valid_after,
        valid_before=auth.valid_before,
        purpose="channel deposit",
    )


@dataclass(frozen=True, slots=True)
class OpenDeposit:
    """A deposit reserved and not yet posted or voided: its money may be on its way to escrow."""

    deposit_id: int
    amount: int
    nonce: str | None
    valid_after: int | None
    valid_before: int | None


def open_deposits(books: AgentBooks, channel_id: str) -> list[OpenDeposit]:
    """The channel's deposits still reserved, oldest first."""
    t = _transfers.c
    with books.database.read() as session:
        rows = session.execute(
            select(t.id, t.amount, t.authorization_nonce, t.valid_after, t.valid_before)
            .join(_open, _open.c.transfer_id == t.id)
            .where(
                t.credit_account_id == escrow_account_id(books, channel_id),
                t.code == int(ChannelTransferCode.CHANNEL_DEPOSIT),
            )
            .order_by(t.timestamp_ns)
        ).all()
    return [OpenDeposit(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]


def open_charge(books: AgentBooks, payment_id: int) -> int | None:
    """A charge's reserved ceiling while it is still reserved; None once posted, voided or expired."""
    t = _transfers.c
    with books.database.read() as session:
        amount = session.execute(
            select(t.amount)
            .join(_open, _open.c.transfer_id == t.id)
            .where(t.id == payment_id, t.code == int(ChannelTransferCode.CHANNEL_CHARGE))
        ).scalar()
    return None if amount is None else int(amount)


def reserve_deposit(
    books: AgentBooks,
    *,
    deposit_id: int,
    channel_id: str,
    amount: int,
    wanted_min: int,
    task_id: str | None,
    authorization: DepositAuthorization | None = None,
) -> int | str:
    """Lock up to ``amount`` (at least ``wanted_min``) for a deposit: the amount locked, or a reason.

    ``authorization`` (the ERC-3009 nonce and window the deposit will be
    signed with, chosen before anything is signed) is stored with the
    reservation, so a deposit whose process died can be resolved from the
    token's ``AuthorizationUsed`` log, or signed again, byte for byte.
    """
    books.ensure()
    try:
        with books.database.write() as session:
            _ensure_accounts(session, books, channel_id)
            # The write lock must be held before the room is read: a ledger
            # write claims it, so the accounts are created first.
            # ``wanted_min``: the part of this request's charge the escrow does not cover yet.
            amount = min(amount, deposit_room(session, books, task_id, wanted_min))
            if amount < wanted_min:
                raise _Refused("exceeds_budget")
            (result,) = create_transfers(
                session=session,
                transfers=[
                    NewTransfer(
                        id=deposit_id,
                        debit_account_id=wallet_account_id(books),
                        credit_account_id=escrow_account_id(books, channel_id),
                        amount=amount,
                        ledger=books.ledger,
                        code=ChannelTransferCode.CHANNEL_DEPOSIT,
                        flags=TransferFlags.PENDING,
                        timeout_s=_HOLD_S,
                        payment=_deposit_details(books, authorization),
                    )
                ],
            )
            if not result.succeeded:
                raise _Refused(str(result))
    except _Refused as refused:
        return refused.reason
    return amount


def post_deposit(
    books: AgentBooks,
    deposit_id: int,
    *,
    tx_hash: str | None,
    block_number: int | None,
    payer: str,
    collector: str,
) -> str:
    """Post a reserved deposit with its transaction: the wallet → collector ``Transfer`` on chain."""
    facts = PaymentDetails(
        network=books.asset.network if tx_hash else None,
        token_address=books.asset.address if tx_hash else None,
        tx_hash=tx_hash,
        block_number=block_number,
        payer_address=payer if tx_hash else None,
        payee_address=collector if tx_hash else None,
    )
    with books.database.write() as session:
        (result,) = create_transfers(
            session=session,
            transfers=[
                NewTransfer.post(id=resolution_id(deposit_id), pending_id=deposit_id, payment=facts)
            ],
        )
    return str(result)


@dataclass(frozen=True, slots=True)
class ChargeIntent:
    """One request's charge on a channel, reserved before its voucher is signed."""

    payment_id: int
    channel_id: str
    pay_to: str
    ceiling: int  # the request's price: the most this voucher adds
    resource: str
    task_id: str | None = None
    purpose: str | None = None


def reserve_charge(books: AgentBooks, intent: ChargeIntent) -> str:
    """Reserve a charge against every budget: ``"ok"`` or the first limit it would pass."""
    books.ensure()
    try:
        with books.database.write() as session:
            _ensure_accounts(session, books, intent.channel_id)
            payee = books.ensure_payee(session, intent.pay_to)
            event = reservation(
                payment_id=intent.payment_id,
                budget_account_id=books.budget_account_id,
                payee_account_id=payee,
                amount=intent.ceiling,
                ledger=books.ledger,
                payment=PaymentDetails(
                    payer_address=None,
                    payee_address=intent.pay_to,
                    resource=intent.resource[:2048],
                    task_id=intent.task_id,
                    purpose=(intent.purpose or "")[:2048] or None,
                    valid_before=int(time.time()) + _HOLD_S,
                ),
                code=ChannelTransferCode.CHANNEL_CHARGE,
            )
            (result,) = create_transfers(session=session, transfers=[event])
            if result is not CreateTransferResult.OK:
                raise _Refused(str(result))
            # As for exact payments: the task's and the agent's lifetime
            # budgets are summed with the new reservation, under the lock.
            passed = budget_passed(session, books, intent.task_id)
            if passed is not None:
                raise _Refused(passed)
    except _Refused as refused:
        return refused.reason
    return "ok"


def _release_id(payment_id: int) -> int:
    return derived_id("channel-release", str(payment_id))


def _book_with_release(
    session: Session,
    books: AgentBooks,
    charge: NewTransfer,
    *,
    charge_id: int,
    channel_id: str,
    amount: int,
) -> str:
    """Write ``charge`` (a post or a spend) and release ``amount`` from the channel's escrow account.

    The answer is the first of the two results that did not succeed, else the release's.
    """
    release = NewTransfer(
        id=_release_id(charge_id),
        debit_account_id=escrow_account_id(books, channel_id),
        credit_account_id=wallet_account_id(books),
        amount=amount,
        ledger=books.ledger,
        code=ChannelTransferCode.CHANNEL_RELEASE,
    )
    first, second = create_transfers(session=session, transfers=[charge, release])
    return str(first) if not first.succeeded else str(second)


def post_charge(books: AgentBooks, payment_id: int, channel_id: str, amount: int) -> str:
    """Post a charge of ``amount`` (at most its ceiling) and move it out of the escrow account."""
    if amount == 0:
        return void_pending(books, payment_id)
    with books.database.write() as session:
        post = NewTransfer.post(id=resolution_id(payment_id), pending_id=payment_id, amount=amount)
        return _book_with_release(
            session, books, post, charge_id=payment_id, channel_id=channel_id, amount=amount
        )


def book_extra_charge(
    books: AgentBooks, *, transfer_id: int, channel_id: str, pay_to: str, amount: int
) -> str:
    """Book a charge learned after the fact (a resync proved we signed for it): spend, then release."""
    with books.database.write() as session:
        payee = books.ensure_payee(session, pay_to)
        spend = NewTransfer(
            id=transfer_id,
            debit_account_id=books.budget_account_id,
            credit_account_id=payee,
            amount=amount,
            ledger=books.ledger,
            code=ChannelTransferCode.CHANNEL_CHARGE,
            payment=PaymentDetails(payee_address=pay_to, purpose="channel resync"),
        )
        return _book_with_release(
            session, books, spend, charge_id=transfer_id, channel_id=channel_id, amount=amount
        )


def void_pending(books: AgentBooks, pending_id: int) -> str:
    """Void a reserved charge or deposit that certainly moved nothing."""
    with books.database.write() as session:
        event = NewTransfer(
            id=resolution_id(pending_id),
            pending_id=pending_id,
            flags=TransferFlags.VOID_PENDING_TRANSFER,
        )
        (result,) = create_transfers(session=session, transfers=[event])
    return str(result)


def book_refund(
    books: AgentBooks,
    *,
    channel_id: str,
    amount: int,
    tx_hash: str,
    block_number: int | None,
    escrow: str,
    wallet: str,
) -> str:
    """Book money back from escrow to the wallet: the escrow → wallet ``Transfer`` on chain."""
    with books.database.write() as session:
        _ensure_accounts(session, books, channel_id)
        (result,) = create_transfers(
            session=session,
            transfers=[
                NewTransfer(
                    id=derived_id("channel-refund", channel_id.lower(), tx_hash.lower()),
                    debit_account_id=escrow_account_id(books, channel_id),
                    credit_account_id=wallet_account_id(books),
                    amount=amount,
                    ledger=books.ledger,
                    code=ChannelTransferCode.CHANNEL_REFUND,
                    payment=PaymentDetails(
                        network=books.asset.network,
                        token_address=books.asset.address,
                        tx_hash=tx_hash,
                        block_number=block_number,
                        payer_address=escrow,
                        payee_address=wallet,
                        purpose="channel refund",
                    ),
                )
            ],
        )
    return str(result)
