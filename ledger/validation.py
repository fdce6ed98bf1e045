"""Checks of a transfer event that need no lookups, and of a retry against its original.

``validate`` finds what is wrong with an event on its own (a zero amount,
the same account on both sides, flags that exclude each other), in
TigerBeetle's order. ``compare_existing`` decides whether an event whose id
is taken is a faithful retry (``exists``) or names the first field that
differs. Both are pure.
"""

from __future__ import annotations

from typing import Any

from farthing.ledger.columns import AMOUNT_MAX, ID_MAX
from farthing.ledger.flags import CLIENT_TRANSFER_FLAGS, TransferFlags
from farthing.ledger.inputs import NewTransfer
from farthing.ledger.results import CreateTransferResult

__all__ = ["compare_existing", "validate"]

R = CreateTransferResult
# Plain ints: IntFlag arithmetic is slow enough to show up on the hot path.
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_RESOLVE = _POST | int(TransferFlags.VOID_PENDING_TRANSFER)
_KIND_FLAGS = _PENDING | _RESOLVE
_BALANCING = int(TransferFlags.BALANCING_DEBIT | TransferFlags.BALANCING_CREDIT)
_CLIENT_FLAGS = int(CLIENT_TRANSFER_FLAGS)


def validate(event: NewTransfer) -> CreateTransferResult | None:
    """The reasons an event is malformed on its own, before any lookup."""
    flags = int(event.flags)
    if event.id == 0:
        return R.ID_MUST_NOT_BE_ZERO
    if event.id > ID_MAX:
        return R.ID_MUST_NOT_BE_INT_MAX
    if flags & ~_CLIENT_FLAGS:
        return R.RESERVED_FLAG
    kinds = flags & _KIND_FLAGS
    if kinds & (kinds - 1):
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    resolving = bool(kinds & _RESOLVE)
    if resolving and flags & _BALANCING:
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if event.timeout_s < 0:
        return R.TIMEOUT_MUST_NOT_BE_NEGATIVE
    if event.timeout_s and not flags & _PENDING:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if resolving:
        if event.pending_id == 0:
            return R.PENDING_ID_MUST_NOT_BE_ZERO
        if event.pending_id == event.id:
            return R.PENDING_ID_MUST_BE_DIFFERENT
        if event.debit_account_id and event.debit_account_id == event.credit_account_id:
            return R.ACCOUNTS_MUST_BE_DIFFERENT
        if event.amount is not None:
            if event.amount < 0:
                return R.AMOUNT_MUST_NOT_BE_NEGATIVE
            if event.amount == 0 and flags & _POST:
                return R.AMOUNT_MUST_NOT_BE_ZERO
        return None
    if event.pending_id != 0:
        return R.PENDING_ID_MUST_BE_ZERO
    if event.debit_account_id == 0:
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if event.credit_account_id == 0:
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if event.debit_account_id == event.credit_account_id:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    if event.amount is None or event.amount == 0:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    if event.amount < 0:
        return R.AMOUNT_MUST_NOT_BE_NEGATIVE
    if event.amount > AMOUNT_MAX:
        return R.AMOUNT_MUST_NOT_EXCEED_MAX
    if event.ledger == 0:
        return R.LEDGER_MUST_NOT_BE_ZERO
    if event.code == 0:
        return R.CODE_MUST_NOT_BE_ZERO
    return None


def compare_existing(event: NewTransfer, row: dict[str, Any]) -> CreateTransferResult:
    """``exists`` for a faithful retry, else the first field that differs."""
    resolving = bool(int(event.flags) & _RESOLVE)
    if int(event.flags) != row["flags"]:
        return R.EXISTS_WITH_DIFFERENT_FLAGS
    if event.pending_id != (row["pending_id"] or 0):
        return R.EXISTS_WITH_DIFFERENT_PENDING_ID
    if event.timeout_s != row["timeout_s"]:
        return R.EXISTS_WITH_DIFFERENT_TIMEOUT
    # On a post or void, zero and None mean "as the pending transfer", so
    # only the fields the retry actually names are compared.
    for name, reason in (
        ("debit_account_id", R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
        ("credit_account_id", R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
    ):
        value = getattr(event, name)
        if (value or not resolving) and value != row[name]:
            return reason
    if event.amount is not None and not event.flags & _BALANCING and event.amount != row["amount"]:
        return R.EXISTS_WITH_DIFFERENT_AMOUNT
    for name, reason in (
        ("user_data_128", R.EXISTS_WITH_DIFFERENT_USER_DATA_128),
        ("user_data_64", R.EXISTS_WITH_DIFFERENT_USER_DATA_64),
        ("user_data_32", R.EXISTS_WITH_DIFFERENT_USER_DATA_32),
        ("ledger", R.EXISTS_WITH_DIFFERENT_LEDGER),
        ("code", R.EXISTS_WITH_DIFFERENT_CODE),
    ):
        value = getattr(event, name)
        if (value or not resolving) and value != row[name]:
            return reason
    for name, value in event.payment.as_columns().items():
        if (value is not None or not resolving) and value != row[name]:
            return R.EXISTS_WITH_DIFFERENT_PAYMENT
    return R.EXISTS
