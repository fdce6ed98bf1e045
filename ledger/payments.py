"""Payments as two-phase transfers: reserve, then settle, release or expire.

These are thin helpers over ``create_transfers`` that fix the conventions
the rest of Farthing relies on:

* the payment id is the pending transfer's id, made by the client and saved
  before anything is signed;
* the post or void of a payment has a derived id, ``resolution_id(payment
  id)``, so a retried settle gets ``exists`` without the caller keeping a
  second id, and a void after a post is refused rather than applied;
* the reservation does not expire before the authorization's
  ``validBefore``: until then the signed authorization could still be
  executed on chain, so its budget must stay reserved. ``EXPIRY_GRACE_S``
  more leaves time to post a settlement mined at the last moment.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from farthing.ledger.codes import TransferCode
from farthing.ledger.flags import TransferFlags
from farthing.ledger.inputs import NewTransfer, PaymentDetails, derived_id
from farthing.ledger.repository import create_transfers
from farthing.ledger.results import CreateTransferResult

__all__ = [
    "EXPIRY_GRACE_S",
    "release_payment",
    "reservation",
    "reserve_payment",
    "resolution_id",
    "settle_payment",
]

EXPIRY_GRACE_S = 120
DEFAULT_TIMEOUT_S = 600


def resolution_id(payment_id: int) -> int:
    """The id of the transfer that posts or voids ``payment_id``."""
    return derived_id(b"farthing.ledger.resolution:", payment_id.to_bytes(16, "big"))


def reservation(
    *,
    payment_id: int,
    budget_account_id: int,
    payee_account_id: int,
    amount: int,
    ledger: int,
    payment: PaymentDetails,
    now_s: int | None = None,
    code: int = TransferCode.PAYMENT,
) -> NewTransfer:
    """The pending transfer that reserves a payment's amount against a budget."""
    if payment.valid_before is not None:
        now = int(time.time()) if now_s is None else now_s
        timeout_s = max(1, payment.valid_before - now + EXPIRY_GRACE_S)
    else:
        timeout_s = DEFAULT_TIMEOUT_S
    return NewTransfer(
        id=payment_id,
        debit_account_id=budget_account_id,
        credit_account_id=payee_account_id,
        amount=amount,
        ledger=ledger,
        code=int(code),
        flags=TransferFlags.PENDING,
        timeout_s=timeout_s,
        payment=payment,
    )


def reserve_payment(
    *,
    session: Session,
    payment_id: int,
    budget_account_id: int,
    payee_account_id: int,
    amount: int,
    ledger: int,
    payment: PaymentDetails,
    now_ns: int | None = None,
) -> CreateTransferResult:
    """Reserve ``amount`` for a payment; ``exceeds_budget`` and friends refuse it."""
    now = time.time_ns() if now_ns is None else now_ns
    event = reservation(
        payment_id=payment_id,
        budget_account_id=budget_account_id,
        payee_account_id=payee_account_id,
        amount=amount,
        ledger=ledger,
        payment=payment,
        now_s=now // 1_000_000_000,
    )
    return create_transfers(session=session, transfers=[event], now_ns=now)[0]


def settle_payment(
    *,
    session: Session,
    payment_id: int,
    payment: PaymentDetails,
    amount: int | None = None,
    now_ns: int | None = None,
) -> CreateTransferResult:
    """Post a reserved payment with its settlement facts (``tx_hash`` and so on).

    ``amount`` below the reservation posts that much and releases the rest.
    """
    event = NewTransfer.post(
        id=resolution_id(payment_id), pending_id=payment_id, amount=amount, payment=payment
    )
    return create_transfers(session=session, transfers=[event], now_ns=now_ns)[0]


def release_payment(
    *, session: Session, payment_id: int, now_ns: int | None = None
) -> CreateTransferResult:
    """Void a reserved payment that was refused or failed before settlement."""
    event = NewTransfer.void(id=resolution_id(payment_id), pending_id=payment_id)
    return create_transfers(session=session, transfers=[event], now_ns=now_ns)[0]
