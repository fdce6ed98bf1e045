"""Result codes: every expected outcome of a ledger write is one of these values.

The values are TigerBeetle's snake_case result names where TigerBeetle has
one, so its documentation explains them. Farthing adds the budget reasons
(``exceeds_budget``, ``exceeds_daily_limit``, ...) and a few for payment data
that TigerBeetle keeps outside the ledger. ``str(result)`` is the reason.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CreateAccountResult",
    "CreateTransferResult",
    "RegisterAssetResult",
    "SetBudgetResult",
]


class _Result(StrEnum):
    @property
    def succeeded(self) -> bool:
        """True for ``ok`` and for ``exists`` (an idempotent retry)."""
        return self.value in ("ok", "exists")


class CreateAccountResult(_Result):
    OK = "ok"
    EXISTS = "exists"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    RESERVED_FLAG = "reserved_flag"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    EXISTS_WITH_DIFFERENT_FLAGS = "exists_with_different_flags"
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = "exists_with_different_user_data_128"
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = "exists_with_different_user_data_64"
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = "exists_with_different_user_data_32"
    EXISTS_WITH_DIFFERENT_LEDGER = "exists_with_different_ledger"
    EXISTS_WITH_DIFFERENT_CODE = "exists_with_different_code"
    EXISTS_WITH_DIFFERENT_LABEL = "exists_with_different_label"


class CreateTransferResult(_Result):
    OK = "ok"
    EXISTS = "exists"
    # The event itself is malformed.
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    RESERVED_FLAG = "reserved_flag"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "debit_account_id_must_not_be_zero"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "credit_account_id_must_not_be_zero"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    TIMEOUT_MUST_NOT_BE_NEGATIVE = "timeout_must_not_be_negative"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    AMOUNT_MUST_NOT_BE_NEGATIVE = "amount_must_not_be_negative"
    AMOUNT_MUST_NOT_EXCEED_MAX = "amount_must_not_exceed_max"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    # The event does not fit the books.
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = "accounts_must_have_the_same_ledger"
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = (
        "transfer_must_have_the_same_ledger_as_accounts"
    )
    ASSET_NOT_FOUND = "asset_not_found"
    ASSET_MUST_HAVE_THE_SAME_LEDGER_AS_TRANSFER = "asset_must_have_the_same_ledger_as_transfer"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = (
        "pending_transfer_has_different_debit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = (
        "pending_transfer_has_different_credit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = "pending_transfer_has_different_ledger"
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = "pending_transfer_has_different_code"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    # A retry whose id is taken by a different transfer.
    EXISTS_WITH_DIFFERENT_FLAGS = "exists_with_different_flags"
    EXISTS_WITH_DIFFERENT_PENDING_ID = "exists_with_different_pending_id"
    EXISTS_WITH_DIFFERENT_TIMEOUT = "exists_with_different_timeout"
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = "exists_with_different_debit_account_id"
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = "exists_with_different_credit_account_id"
    EXISTS_WITH_DIFFERENT_AMOUNT = "exists_with_different_amount"
    EXISTS_WITH_DIFFERENT_USER_DATA_128 = "exists_with_different_user_data_128"
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = "exists_with_different_user_data_64"
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = "exists_with_different_user_data_32"
    EXISTS_WITH_DIFFERENT_LEDGER = "exists_with_different_ledger"
    EXISTS_WITH_DIFFERENT_CODE = "exists_with_different_code"
    EXISTS_WITH_DIFFERENT_PAYMENT = "exists_with_different_payment"
    # Balances that would leave the representable range.
    OVERFLOWS_DEBITS_PENDING = "overflows_debits_pending"
    OVERFLOWS_CREDITS_PENDING = "overflows_credits_pending"
    OVERFLOWS_DEBITS_POSTED = "overflows_debits_posted"
    OVERFLOWS_CREDITS_POSTED = "overflows_credits_posted"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    OVERFLOWS_TIMEOUT = "overflows_timeout"
    # Account limits (TigerBeetle's flags).
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    # Budget policy (Farthing's).
    EXCEEDS_BUDGET = "exceeds_budget"
    EXCEEDS_DAILY_LIMIT = "exceeds_daily_limit"
    EXCEEDS_PAYEE_DAILY_CAP = "exceeds_payee_daily_cap"
    EXCEEDS_PAYMENT_CAP = "exceeds_payment_cap"
    ASSET_NOT_ALLOWED = "asset_not_allowed"


class SetBudgetResult(_Result):
    OK = "ok"
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_MUST_LIMIT_DEBITS = "account_must_limit_debits"
    AGENT_ID_MUST_NOT_BE_EMPTY = "agent_id_must_not_be_empty"
    LIMIT_MUST_NOT_BE_NEGATIVE = "limit_must_not_be_negative"
    LIMIT_MUST_NOT_EXCEED_MAX = "limit_must_not_exceed_max"


class RegisterAssetResult(_Result):
    OK = "ok"
    EXISTS = "exists"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    DECIMALS_OUT_OF_RANGE = "decimals_out_of_range"
    EXISTS_WITH_DIFFERENT_LEDGER = "exists_with_different_ledger"
    EXISTS_WITH_DIFFERENT_DECIMALS = "exists_with_different_decimals"
    EXISTS_WITH_DIFFERENT_SYMBOL = "exists_with_different_symbol"
