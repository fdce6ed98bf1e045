"""The ``upto`` scheme's names and codes: the scheme, its extensions, its refusals.

The refusal codes are the x402 SDK's (``x402.mechanisms.evm.constants``), so
a client or server written against it reads ours the same way; the few that
are ours say so.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EIP2612_KEY",
    "ERC20_APPROVAL_KEY",
    "ERR_ALLOWANCE_REQUIRED",
    "ERR_AMOUNT_MISMATCH",
    "ERR_DEADLINE_EXPIRED",
    "ERR_DEADLINE_TOO_LONG",
    "ERR_EIP2612",
    "ERR_ERC20_APPROVAL",
    "ERR_FACILITATOR_MISMATCH",
    "ERR_INSUFFICIENT_BALANCE",
    "ERR_INVALID_SIGNATURE",
    "ERR_NETWORK_MISMATCH",
    "ERR_NONCE_USED",
    "ERR_NOT_YET_VALID",
    "ERR_PAYLOAD_FORMAT",
    "ERR_RECIPIENT_MISMATCH",
    "ERR_SCHEME",
    "ERR_SETTLEMENT_EXCEEDS_AMOUNT",
    "ERR_SPENDER",
    "ERR_TOKEN_MISMATCH",
    "ERR_TRANSACTION_FAILED",
    "PERMIT2_ALLOWANCE_REQUIRED",
    "SCHEME",
]

SCHEME: Final = "upto"
EIP2612_KEY: Final = "eip2612GasSponsoring"
ERC20_APPROVAL_KEY: Final = "erc20ApprovalGasSponsoring"

# What a seller answers with HTTP 412 when the payer has not approved Permit2 (the spec's name).
PERMIT2_ALLOWANCE_REQUIRED: Final = "PERMIT2_ALLOWANCE_REQUIRED"

ERR_SCHEME: Final = "invalid_upto_evm_scheme"
ERR_NETWORK_MISMATCH: Final = "invalid_upto_evm_network_mismatch"
ERR_PAYLOAD_FORMAT: Final = "invalid_permit2_payload_format"
ERR_SPENDER: Final = "invalid_permit2_spender"
ERR_RECIPIENT_MISMATCH: Final = "invalid_permit2_recipient_mismatch"
ERR_FACILITATOR_MISMATCH: Final = "upto_facilitator_mismatch"
ERR_DEADLINE_EXPIRED: Final = "permit2_deadline_expired"
ERR_NOT_YET_VALID: Final = "permit2_not_yet_valid"
ERR_AMOUNT_MISMATCH: Final = "permit2_amount_mismatch"
ERR_TOKEN_MISMATCH: Final = "permit2_token_mismatch"
ERR_INVALID_SIGNATURE: Final = "invalid_permit2_signature"
ERR_ALLOWANCE_REQUIRED: Final = "permit2_allowance_required"
ERR_INSUFFICIENT_BALANCE: Final = "permit2_insufficient_balance"
ERR_NONCE_USED: Final = "permit2_invalid_nonce"  # the SDK's name for Permit2's InvalidNonce
ERR_SETTLEMENT_EXCEEDS_AMOUNT: Final = "invalid_upto_evm_payload_settlement_exceeds_amount"
ERR_TRANSACTION_FAILED: Final = "invalid_upto_evm_transaction_failed"
# Ours: a deadline further away than the offer's maxTimeoutSeconds (plus skew) allows.
ERR_DEADLINE_TOO_LONG: Final = "permit2_deadline_too_long"
# The extensions' refusals start with these (the SDK's prefixes).
ERR_EIP2612: Final = "eip2612"
ERR_ERC20_APPROVAL: Final = "erc20_approval"
