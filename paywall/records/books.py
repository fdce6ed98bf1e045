"""The merchant's books: each settled payment booked once as revenue.

:class:`RevenueBook` is the seam; :class:`LedgerRevenueBook` writes to
``farthing.ledger``. A settled payment becomes one posted transfer from the
payer's account to the merchant's revenue account, carrying the route, the
payer, the amount, the fiat rate and the transaction hash as payment facts.

Every id is derived from the payment, never drawn at random: the transfer id
from ``(network, token, payer, nonce)``, which is unique per authorization,
and the account ids from the address. A retry, a second process, or the
recovery sweep that books what an earlier crash left unbooked, all write the
same ids, and the ledger answers ``exists``: a payment is never booked twice.

Channels (x402 ``batch-settlement``) earn before the chain moves, so their
revenue is booked in three steps (:class:`ChannelRevenueBook`):

==================  ==========================================  =====================
when                transfer (debit → credit)                   id from
==================  ==========================================  =====================
a voucher earns     receivable(channel) → revenue               channel, cumulative
                                                                amount, reservation
a claim lands       claimed(receiver, token) → receivable       channel, new
                                                                ``totalClaimed``
a settle lands      cash(receiver, token) → claimed             tx hash, log index
==================  ==========================================  =====================

A receivable's balance (debits − credits) is earned but not yet claimed;
``claimed`` holds what sits claimed in the escrow, not yet swept; ``cash``
counts what the settles paid out to the receiver. Revenue is credited once,
when earned. These transfers carry no token facts: the channel
reconciliation (``farthing.paywall.schemes.batch_settlement.reconcile``) matches them against
the escrow's events, not the token reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Final, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from farthing.ledger import (
    AccountCode,
    CreateTransferResult,
    LedgerDatabase,
    NewAccount,
    NewTransfer,
    PaymentDetails,
    RegisterAssetResult,
    TransferCode,
    create_accounts,
    create_transfers,
    derived_id,
    register_asset,
)
from farthing.ledger import Asset as LedgerAsset

__all__ = [
    "BookingResult",
    "ChannelAccountCode",
    "ChannelAsset",
    "ChannelCharge",
    "ChannelClaim",
    "ChannelRevenueBook",
    "ChannelSettle",
    "ChannelTransferCode",
    "LedgerRevenueBook",
    "RevenueBook",
    "SettledPayment",
    "account_id",
    "channel_transfer_id",
    "revenue_transfer_id",
]

_NAMESPACE: Final = b"farthing.paywall.site.revenue:"


@dataclass(frozen=True, slots=True)
class SettledPayment:
    """What the books need to know about one settled payment."""

    network: str
    token: str
    decimals: int
    symbol: str
    payer: str
    pay_to: str
    nonce: str  # 0x + 64 hex digits
    amount: int
    tx_hash: str
    block_number: int | None
    route: str
    resource: str
    valid_after: int
    valid_before: int
    fiat_currency: str | None = None
    fiat_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BookingResult:
    """``booked`` (written now, or already there), or a snake_case reason it was not."""

    booked: bool
    reason: str  # "ok", "exists", or the ledger's refusal
    transfer_id: int


@runtime_checkable
class RevenueBook(Protocol):
    """Books settled payments as revenue, idempotently."""

    def record_settlement(self, payment: SettledPayment) -> BookingResult: ...


class ChannelAccountCode(IntEnum):
    """The merchant's channel accounts (beside ``AccountCode.REVENUE``)."""

    RECEIVABLE = 20  # one per channel: earned by vouchers, not yet claimed
    CLAIMED = 21  # one per (receiver, token): claimed in the escrow, not yet settled
    CASH = 22  # one per (receiver, token): settled to the receiver's address


class ChannelTransferCode(IntEnum):
    EARNED = 20
    CLAIMED = 21
    SETTLED = 22


@dataclass(frozen=True, slots=True)
class ChannelAsset:
    """Which token, and how the ledger registers it."""

    network: str
    token: str
    decimals: int
    symbol: str


@dataclass(frozen=True, slots=True)
class ChannelCharge:
    """One request paid by a voucher: ``amount`` earned under the cumulative ``cumulative``.

    ``reserved_at_ns`` is the channel row's stamp from the reservation; with
    the cumulative amount it makes the id unique even when a concurrent
    request's release lets a later voucher reuse a cumulative amount.
    """

    asset: ChannelAsset
    receiver: str
    payer: str
    channel_id: str  # 0x + 64 hex digits
    cumulative: int
    reserved_at_ns: int
    amount: int
    resource: str


@dataclass(frozen=True, slots=True)
class ChannelClaim:
    """A ``Claimed`` event: ``amount`` claimed on ``channel_id``, now ``total_claimed``."""

    asset: ChannelAsset
    receiver: str
    channel_id: str
    total_claimed: int
    amount: int
    tx_hash: str


@dataclass(frozen=True, slots=True)
class ChannelSettle:
    """A ``Settled`` event: ``amount`` swept to ``receiver``."""

    asset: ChannelAsset
    receiver: str
    amount: int
    tx_hash: str
    log_index: int


@runtime_checkable
class ChannelRevenueBook(Protocol):
    """Books channel revenue as earned, claimed and settled, idempotently."""

    def record_channel_charge(self, charge: ChannelCharge) -> BookingResult: ...

    def record_channel_claim(self, claim: ChannelClaim) -> BookingResult: ...

    def record_channel_settle(self, settle: ChannelSettle) -> BookingResult: ...


def _id(*parts: str) -> int:
    return derived_id(_NAMESPACE, "\x1f".join(p.lower() for p in parts).encode())


def revenue_transfer_id(network: str, token: str, payer: str, nonce: str) -> int:
    """The revenue transfer's id: a function of the authorization, so retries collide."""
    return _id("transfer", network, token, payer, nonce)


def account_id(kind: str, ledger: int, address: str) -> int:
    """The id of a payer's (``"payer"``) or merchant's (``"revenue"``) account on ``ledger``.

    Channel accounts: ``"receivable"`` with the channel id as ``address``;
    ``"claimed"`` and ``"cash"`` with ``"receiver/token"``.
    """
    return _id("account", kind, str(ledger), address)


def channel_transfer_id(kind: str, *parts: str) -> int:
    """A channel transfer's id (``"earned"``, ``"claimed"``, ``"settled"``): retries collide."""
    return _id("channel", kind, *parts)


class LedgerRevenueBook:
    """Revenue in ``farthing.ledger``; a token's ledger is the one it is registered on."""

    def __init__(self, database: LedgerDatabase, *, ledger: int = 1) -> None:
        if not 0 < ledger < 2**32:
            raise ValueError("ledger must be a positive 32-bit number")
        self.database = database
        self.default_ledger = ledger

    def __repr__(self) -> str:
        return f"LedgerRevenueBook({self.database!r})"

    def _ledger(self, session: Session, asset: ChannelAsset) -> int | str:
        """The token's ledger (registering it on ours if new), or the ledger's refusal."""
        asset_id = f"{asset.network}/erc20:{asset.token.lower()}"
        registered = register_asset(
            session=session,
            asset_id=asset_id,
            ledger=self.default_ledger,
            decimals=asset.decimals,
            symbol=asset.symbol,
        )
        if registered is RegisterAssetResult.EXISTS_WITH_DIFFERENT_LEDGER:
            row = session.get(LedgerAsset, asset_id.lower())
            return int(row.ledger) if row is not None else self.default_ledger
        if registered.succeeded:
            return self.default_ledger
        return str(registered)

    def ledger_of(self, asset: ChannelAsset) -> int:
        """The ledger ``asset`` is booked on (the default one if it is not registered yet)."""
        with self.database.read() as session:
            row = session.get(LedgerAsset, f"{asset.network}/erc20:{asset.token.lower()}".lower())
            ledger: int = self.default_ledger if row is None else int(row.ledger)
        return ledger

    def _post(
        self,
        asset: ChannelAsset,
        transfer_id: int,
        debit: tuple[str, str, int],
        credit: tuple[str, str, int],
        amount: int,
        code: int,
    ) -> BookingResult:
        """One transfer between two (kind, key, account code) accounts, made if missing."""
        if amount <= 0:
            return BookingResult(False, "amount_must_not_be_zero", transfer_id)
        with self.database.write() as session:
            ledger = self._ledger(session, asset)
            if isinstance(ledger, str):
                return BookingResult(False, ledger, transfer_id)
            ids = [account_id(kind, ledger, key) for kind, key, _ in (debit, credit)]
            made = create_accounts(
                session=session,
                accounts=[
                    NewAccount(i, ledger, c, label=f"{kind} {key.lower()}"[:256])
                    for i, (kind, key, c) in zip(ids, (debit, credit), strict=True)
                ],
            )
            refused = [r for r in made if not r.succeeded]
            if refused:
                return BookingResult(False, str(refused[0]), transfer_id)
            (result,) = create_transfers(
                session=session,
                transfers=[
                    NewTransfer(
                        id=transfer_id,
                        debit_account_id=ids[0],
                        credit_account_id=ids[1],
                        amount=amount,
                        ledger=ledger,
                        code=code,
                    )
                ],
            )
        booked = result in (CreateTransferResult.OK, CreateTransferResult.EXISTS)
        return BookingResult(booked, str(result), transfer_id)

    def record_channel_charge(self, charge: ChannelCharge) -> BookingResult:
        """A voucher earned ``amount``: the channel's receivable grows, and so does revenue."""
        transfer_id = channel_transfer_id(
            "earned", charge.channel_id, str(charge.cumulative), str(charge.reserved_at_ns)
        )
        return self._post(
            charge.asset,
            transfer_id,
            ("receivable", charge.channel_id, ChannelAccountCode.RECEIVABLE),
            ("revenue", charge.receiver, AccountCode.REVENUE),
            charge.amount,
            ChannelTransferCode.EARNED,
        )

    def record_channel_claim(self, claim: ChannelClaim) -> BookingResult:
        """A claim landed: the receivable moves to claimed-in-escrow."""
        transfer_id = channel_transfer_id("claimed", claim.channel_id, str(claim.total_claimed))
        return self._post(
            claim.asset,
            transfer_id,
            ("claimed", f"{claim.receiver}/{claim.asset.token}", ChannelAccountCode.CLAIMED),
            ("receivable", claim.channel_id, ChannelAccountCode.RECEIVABLE),
            claim.amount,
            ChannelTransferCode.CLAIMED,
        )

    def record_channel_settle(self, settle: ChannelSettle) -> BookingResult:
        """A settle landed: what was claimed in the escrow is now the receiver's cash."""
        transfer_id = channel_transfer_id("settled", settle.tx_hash, str(settle.log_index))
        key = f"{settle.receiver}/{settle.asset.token}"
        return self._post(
            settle.asset,
            transfer_id,
            ("cash", key, ChannelAccountCode.CASH),
            ("claimed", key, ChannelAccountCode.CLAIMED),
            settle.amount,
            ChannelTransferCode.SETTLED,
        )

    def record_settlement(self, payment: SettledPayment) -> BookingResult:
        transfer_id = revenue_transfer_id(
            payment.network, payment.token, payment.payer, payment.nonce
        )
        asset = ChannelAsset(payment.network, payment.token, payment.decimals, payment.symbol)
        with self.database.write() as session:
            ledger = self._ledger(session, asset)
            if isinstance(ledger, str):
                return BookingResult(False, ledger, transfer_id)
            payer_account = account_id("payer", ledger, payment.payer)
            revenue_account = account_id("revenue", ledger, payment.pay_to)
            made = create_accounts(
                session=session,
                accounts=[
                    NewAccount(
                        payer_account,
                        ledger,
                        AccountCode.PAYER,
                        label=f"payer {payment.payer.lower()}",
                    ),
                    NewAccount(
                        revenue_account,
                        ledger,
                        AccountCode.REVENUE,
                        label=f"revenue {payment.pay_to.lower()}",
                    ),
                ],
            )
            refused = [r for r in made if not r.succeeded]
            if refused:
                return BookingResult(False, str(refused[0]), transfer_id)
            details = PaymentDetails(
                network=payment.network,
                token_address=payment.token,
                authorization_nonce=payment.nonce,
                tx_hash=payment.tx_hash,
                block_number=payment.block_number,
                payer_address=payment.payer,
                payee_address=payment.pay_to,
                resource=payment.resource[:2048],
                purpose=f"paywall {payment.route}"[:2048],
                fiat_rate=None if payment.fiat_rate is None else str(payment.fiat_rate),
                fiat_currency=payment.fiat_currency,
                valid_after=min(payment.valid_after, 2**63 - 1),
                valid_before=min(payment.valid_before, 2**63 - 1),
            )
            (result,) = create_transfers(
                session=session,
                transfers=[
                    NewTransfer(
                        id=transfer_id,
                        debit_account_id=payer_account,
                        credit_account_id=revenue_account,
                        amount=payment.amount,
                        ledger=ledger,
                        code=TransferCode.REVENUE,
                        payment=details,
                    )
                ],
            )
        booked = result in (CreateTransferResult.OK, CreateTransferResult.EXISTS)
        return BookingResult(booked, str(result), transfer_id)
