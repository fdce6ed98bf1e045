"""The x402 ``auth-capture`` error codes and the facilitator's answers.

The codes are part of the wire, so they are spelled exactly as the EVM
binding spells them (``invalid_auth_capture_evm_*``), plus two of our own for
what the spec leaves to the facilitator: a lifecycle idempotency key reused
for another operation, and a settlement whose receipt did not arrive in time.

``/verify`` and ``/settle`` answer with :class:`farthing.paywall.wire.VerifyResult`
and :class:`~farthing.paywall.wire.SettleResult`, as every scheme does; their
``extra`` carries the escrow's payment state after the call
(``paymentInfoHash``, ``capturableAmount``, ``refundableAmount`` as decimal
strings) and, on a capture-and-void, the void's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "ERR_AMOUNT_MISMATCH",
    "ERR_AUTHORIZATION_EXPIRED",
    "ERR_AUTHORIZATION_NOT_YET_VALID",
    "ERR_AUTHORIZER_SIGNATURE",
    "ERR_CAPTURE_DEADLINE_EXPIRED",
    "ERR_DEADLINE_ORDERING",
    "ERR_EXTRA",
    "ERR_IDEMPOTENCY_CONFLICT",
    "ERR_INSUFFICIENT_AUTHORIZATION",
    "ERR_INSUFFICIENT_BALANCE",
    "ERR_INVALID_NETWORK",
    "ERR_LIFECYCLE_NOT_RELAYED",
    "ERR_MISSING_RECEIVER_AUTHORIZER",
    "ERR_NETWORK_MISMATCH",
    "ERR_NONCE_MISMATCH",
    "ERR_OPERATOR_MISMATCH",
    "ERR_OPERATOR_NOT_ADMITTED",
    "ERR_PAYLOAD_FORMAT",
    "ERR_PAYLOAD_METHOD_MISMATCH",
    "ERR_PAYLOAD_TYPE",
    "ERR_PAYMENT_ALREADY_COLLECTED",
    "ERR_POLICY",
    "ERR_REFUND_DEADLINE_EXPIRED",
    "ERR_REFUND_EXCEEDS_CAPTURE",
    "ERR_REFUND_FUNDING_UNAVAILABLE",
    "ERR_REQUIREMENTS_MISMATCH",
    "ERR_SALT_BINDING_MISMATCH",
    "ERR_SCHEME",
    "ERR_SETTLEMENT_PENDING",
    "ERR_SIGNATURE",
    "ERR_SIMULATION_FAILED",
    "ERR_TOKEN_COLLECTOR_MISMATCH",
    "ERR_TRANSACTION_REVERTED",
    "ERR_UNEXPECTED_PAYMENT_STATE",
    "ERR_UNSUPPORTED_ASSET_TRANSFER_METHOD",
    "ERR_UNSUPPORTED_OPERATOR_TYPE",
    "ERR_UNSUPPORTED_PAYMENT_FLOW",
    "ERR_VERIFICATION_FAILED",
    "ERR_VOID_AUTHORIZER_SIGNATURE",
    "ERR_VOID_REMAINDER_FULL_CAPTURE",
    "ERR_ZERO_AUTHORIZATION",
    "ESCROW_ERROR_REASONS",
]

_P: Final = "invalid_auth_capture_evm_"
ERR_PAYLOAD_FORMAT: Final = _P + "payload_format"
ERR_PAYLOAD_TYPE: Final = _P + "payload_type"
ERR_VOID_AUTHORIZER_SIGNATURE: Final = _P + "void_authorizer_signature"
ERR_VOID_REMAINDER_FULL_CAPTURE: Final = _P + "void_remainder_full_capture"
ERR_UNSUPPORTED_PAYMENT_FLOW: Final = _P + "unsupported_payment_flow"
ERR_SCHEME: Final = _P + "scheme"
ERR_NETWORK_MISMATCH: Final = _P + "network_mismatch"
ERR_INVALID_NETWORK: Final = "invalid_network"
ERR_EXTRA: Final = _P + "extra"
ERR_MISSING_RECEIVER_AUTHORIZER: Final = _P + "missing_receiver_authorizer"
ERR_UNSUPPORTED_OPERATOR_TYPE: Final = _P + "unsupported_operator_type"
ERR_POLICY: Final = _P + "policy"
ERR_LIFECYCLE_NOT_RELAYED: Final = _P + "lifecycle_not_relayed"
ERR_OPERATOR_NOT_ADMITTED: Final = _P + "operator_not_admitted"
ERR_OPERATOR_MISMATCH: Final = _P + "operator_mismatch"
ERR_SALT_BINDING_MISMATCH: Final = _P + "salt_binding_mismatch"
ERR_AUTHORIZER_SIGNATURE: Final = _P + "authorizer_signature"
ERR_UNEXPECTED_PAYMENT_STATE: Final = _P + "unexpected_payment_state"
ERR_REFUND_FUNDING_UNAVAILABLE: Final = _P + "refund_funding_unavailable"
ERR_UNSUPPORTED_ASSET_TRANSFER_METHOD: Final = _P + "unsupported_asset_transfer_method"
ERR_PAYLOAD_METHOD_MISMATCH: Final = _P + "payload_method_mismatch"
ERR_CAPTURE_DEADLINE_EXPIRED: Final = _P + "capture_deadline_expired"
ERR_REFUND_DEADLINE_EXPIRED: Final = _P + "refund_deadline_expired"
ERR_DEADLINE_ORDERING: Final = _P + "deadline_ordering"
ERR_AUTHORIZATION_EXPIRED: Final = _P + "authorization_expired"
ERR_AUTHORIZATION_NOT_YET_VALID: Final = _P + "authorization_not_yet_valid"
ERR_SIGNATURE: Final = _P + "signature"
ERR_AMOUNT_MISMATCH: Final = _P + "amount_mismatch"
ERR_TOKEN_COLLECTOR_MISMATCH: Final = _P + "token_collector_mismatch"
ERR_NONCE_MISMATCH: Final = _P + "nonce_mismatch"
ERR_INSUFFICIENT_BALANCE: Final = _P + "insufficient_balance"
ERR_SIMULATION_FAILED: Final = _P + "simulation_failed"
ERR_VERIFICATION_FAILED: Final = _P + "verification_failed"
ERR_TRANSACTION_REVERTED: Final = _P + "transaction_reverted"
# Typed simulation reverts the spec maps (the rest of its table, below).
ERR_PAYMENT_ALREADY_COLLECTED: Final = _P + "payment_already_collected"
ERR_INSUFFICIENT_AUTHORIZATION: Final = _P + "insufficient_authorization"
ERR_ZERO_AUTHORIZATION: Final = _P + "zero_authorization"
ERR_REFUND_EXCEEDS_CAPTURE: Final = _P + "refund_exceeds_capture"
# Ours: a paymentInfo field the requirements do not dictate (the spec's
# lifecycle check 3 names no code of its own).
ERR_REQUIREMENTS_MISMATCH: Final = _P + "requirements_mismatch"
# Ours: an idempotency key already used for a different operation.
ERR_IDEMPOTENCY_CONFLICT: Final = _P + "idempotency_conflict"
# Ours: sent, but no receipt in time; retry with the same idempotency key.
ERR_SETTLEMENT_PENDING: Final = _P + "settlement_pending"

# The escrow's custom errors (snake_case, as farthing.paywall.schemes.auth_capture.contract
# reports them) and the token's own reasons, as the spec's reasons.
ESCROW_ERROR_REASONS: Final[Mapping[str, str]] = {
    "after_pre_approval_expiry": ERR_AUTHORIZATION_EXPIRED,
    "invalid_expiries": ERR_DEADLINE_ORDERING,
    "exceeds_max_amount": ERR_AMOUNT_MISMATCH,
    "payment_already_collected": ERR_PAYMENT_ALREADY_COLLECTED,
    "token_collection_failed": _P + "token_collection_failed",
    "invalid_collector_for_operation": _P + "collector",
    "invalid_sender": ERR_OPERATOR_MISMATCH,
    "zero_amount": ERR_AMOUNT_MISMATCH,
    "amount_overflow": _P + "amount_overflow",
    "fee_bps_overflow": _P + "fee_bps",
    "invalid_fee_bps_range": _P + "fee_bps_range",
    "fee_bps_out_of_range": _P + "fee_bps_out_of_range",
    "fee_amount_out_of_range": _P + "fee_bps_out_of_range",
    "zero_fee_receiver": _P + "zero_fee_receiver",
    "invalid_fee_receiver": _P + "fee_receiver",
    "after_authorization_expiry": ERR_CAPTURE_DEADLINE_EXPIRED,
    "insufficient_authorization": ERR_INSUFFICIENT_AUTHORIZATION,
    "zero_authorization": ERR_ZERO_AUTHORIZATION,
    "after_refund_expiry": ERR_REFUND_DEADLINE_EXPIRED,
    "refund_exceeds_capture": ERR_REFUND_EXCEEDS_CAPTURE,
    "authorization_used_or_canceled": ERR_PAYMENT_ALREADY_COLLECTED,
    "invalid_signature": ERR_SIGNATURE,
    "insufficient_balance": ERR_INSUFFICIENT_BALANCE,
    "insufficient_allowance": ERR_REFUND_FUNDING_UNAVAILABLE,
    "authorization_expired": ERR_AUTHORIZATION_EXPIRED,
    "authorization_not_yet_valid": ERR_AUTHORIZATION_NOT_YET_VALID,
}
