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
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol, runtime_checkable

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
    "LedgerRevenueBook",
    "RevenueBook",
    "SettledPayment",
    "account_id",
    "revenue_transfer_id",
]

_NAMESPACE: Final = b"farthing.paywall.revenue:"


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


def _id(*parts: str) -> int:
    return derived_id(_NAMESPACE, "\x1f".join(p.lower() for p in parts).encode())


def revenue_transfer_id(network: str, token: str, payer: str, nonce: str) -> int:
    """The revenue transfer's id: a function of the authorization, so retries collide."""
    return _id("transfer", network, token, payer, nonce)


def account_id(kind: str, ledger: int, address: str) -> int:
    """The id of a payer's (``"payer"``) or merchant's (``"revenue"``) account on ``ledger``."""
    return _id("account", kind, str(ledger), address)


class LedgerRevenueBook:
    """Revenue in ``farthing.ledger``; a token's ledger is the one it is registered on."""

    def __init__(self, database: LedgerDatabase, *, ledger: int = 1) -> None:
        if not 0 < ledger < 2**32:
            raise ValueError("ledger must be a positive 32-bit number")
        self.database = database
        self.default_ledger = ledger

    def __repr__(self) -> str:
        return f"LedgerRevenueBook({self.database!r})"

    def record_settlement(self, payment: SettledPayment) -> BookingResult:
        transfer_id = revenue_transfer_id(
            payment.network, payment.token, payment.payer, payment.nonce
        )
        asset_id = f"{payment.network}/erc20:{payment.token.lower()}"
        with self.database.write() as session:
            registered = register_asset(
                session=session,
                asset_id=asset_id,
                ledger=self.default_ledger,
                decimals=payment.decimals,
                symbol=payment.symbol,
            )
            if registered is RegisterAssetResult.EXISTS_WITH_DIFFERENT_LEDGER:
                row = session.get(LedgerAsset, asset_id.lower())
                ledger = int(row.ledger) if row is not None else self.default_ledger
            elif registered.succeeded:
                ledger = self.default_ledger
            else:
                return BookingResult(False, str(registered), transfer_id)
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
