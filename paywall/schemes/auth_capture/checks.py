"""The auth-capture checks that need no chain: each answers a refusal (the spec's code) or ``None``.

:mod:`farthing.paywall.schemes.auth_capture.facilitator` runs them in the spec's order,
between the reads they need (the payer's code and balance, the nonce's state,
``paymentState``) and before any simulation:

- :func:`collect_info` and :func:`check_collect`: the client's payload against
  the requirements (deadlines, time window, collector, signature, amount,
  salt binding, nonce);
- :func:`check_lifecycle`: a server's lifecycle payload against the
  requirements (receiver authorizer, operator, salt binding, every
  ``paymentInfo`` field, the EIP-712 consents);
- :func:`check_capture`, :func:`check_void` and :func:`check_refund`: the
  operation's preconditions against the escrow's ``paymentState``, including
  the single-use balance check that makes each consent good for one move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from farthing.paywall.schemes.auth_capture.consent import OperatorDomain, payment_hash
from farthing.paywall.schemes.auth_capture.contract import PaymentState
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo, fee_amount, salt_binding
from farthing.paywall.schemes.auth_capture.types import (
    ERR_AMOUNT_MISMATCH,
    ERR_AUTHORIZATION_EXPIRED,
    ERR_AUTHORIZATION_NOT_YET_VALID,
    ERR_AUTHORIZER_SIGNATURE,
    ERR_CAPTURE_DEADLINE_EXPIRED,
    ERR_DEADLINE_ORDERING,
    ERR_INSUFFICIENT_AUTHORIZATION,
    ERR_LIFECYCLE_NOT_RELAYED,
    ERR_NONCE_MISMATCH,
    ERR_OPERATOR_MISMATCH,
    ERR_PAYLOAD_FORMAT,
    ERR_REFUND_DEADLINE_EXPIRED,
    ERR_REFUND_EXCEEDS_CAPTURE,
    ERR_REQUIREMENTS_MISMATCH,
    ERR_SALT_BINDING_MISMATCH,
    ERR_SIGNATURE,
    ERR_TOKEN_COLLECTOR_MISMATCH,
    ERR_UNEXPECTED_PAYMENT_STATE,
    ERR_VOID_AUTHORIZER_SIGNATURE,
    ERR_VOID_REMAINDER_FULL_CAPTURE,
    ERR_ZERO_AUTHORIZATION,
    ESCROW_ERROR_REASONS,
)
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCaptureRequirements,
    CapturePayload,
    CollectPayload,
    RefundPayload,
    VoidPayload,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.eip712 import (
    RECEIVE_WITH_AUTHORIZATION,
    SignatureParts,
    recover_digest,
    verify_authorization_signature,
)
from farthing.wallet.eip3009 import TokenDomain
from farthing.wallet.errors import WalletError

__all__ = [
    "CLOCK_SKEW_S",
    "check_capture",
    "check_collect",
    "check_lifecycle",
    "check_refund",
    "check_void",
    "collect_info",
]

# The spec's floor for "still valid once the settlement lands", in seconds.
CLOCK_SKEW_S: Final = 6

LifecyclePayload = CapturePayload | VoidPayload | RefundPayload


def collect_info(
    payload: CollectPayload, requirements: AuthCaptureRequirements
) -> PaymentInfo | WireRefusal:
    """The ``PaymentInfo`` the client's payload and the requirements dictate together."""
    if requirements.extra.bound != (payload.salt_nonce is not None):
        return WireRefusal(
            ERR_PAYLOAD_FORMAT,
            "saltNonce belongs on the payload exactly when receiverAuthorizer is set",
        )
    try:
        return requirements.payment_info(
            payload.payer, payload.salt, payload.authorization.valid_before
        )
    except WalletError as exc:
        return WireRefusal(ERR_PAYLOAD_FORMAT, str(exc))


def check_collect(
    payload: CollectPayload,
    requirements: AuthCaptureRequirements,
    info: PaymentInfo,
    *,
    now: int,
    collector: str,
    payer_is_contract: bool,
) -> WireRefusal | None:
    """The spec's verification steps 7-13 for the client's payload.

    A contract payer's signature (ERC-1271, ERC-6492, EIP-7702) is checked on chain
    by the verifier (``verify.py``), not here.
    """
    extra, auth = requirements.extra, payload.authorization
    if extra.refund_deadline < extra.capture_deadline:
        return WireRefusal(ERR_DEADLINE_ORDERING, "refundDeadline is before captureDeadline")
    if extra.capture_deadline <= now + CLOCK_SKEW_S:
        return WireRefusal(ERR_CAPTURE_DEADLINE_EXPIRED, "captureDeadline has passed")
    if now + requirements.max_timeout_seconds > extra.capture_deadline:
        return WireRefusal(ERR_DEADLINE_ORDERING, "the signing window ends after captureDeadline")
    if auth.valid_before > extra.capture_deadline:
        return WireRefusal(ERR_DEADLINE_ORDERING, "validBefore is after captureDeadline")
    if auth.valid_before <= now + CLOCK_SKEW_S:
        return WireRefusal(ERR_AUTHORIZATION_EXPIRED, "the authorization has expired")
    if auth.valid_after > now:
        return WireRefusal(ERR_AUTHORIZATION_NOT_YET_VALID, "validAfter is in the future")
    if auth.to != checksum(collector):
        return WireRefusal(ERR_TOKEN_COLLECTOR_MISMATCH, "authorization.to is not the collector")
    if not payer_is_contract:
        domain = TokenDomain(extra.name, extra.version, requirements.chain_id, requirements.asset)
        parts = SignatureParts(auth, domain, payload.signature, RECEIVE_WITH_AUTHORIZATION)
        if not verify_authorization_signature(parts).valid:
            return WireRefusal(ERR_SIGNATURE, "the signature does not recover to the payer")
    if auth.value != requirements.amount:
        return WireRefusal(ERR_AMOUNT_MISMATCH, "authorization.value is not the offer's amount")
    if payload.salt_nonce is not None:
        bound = salt_binding(extra.receiver_authorizer, extra.policy, payload.salt_nonce)
        if bound != payload.salt:
            return WireRefusal(ERR_SALT_BINDING_MISMATCH, "salt is not the binding of saltNonce")
    if info.signature_nonce(requirements.chain_id, extra.auth_capture_escrow) != auth.nonce:
        return WireRefusal(ERR_NONCE_MISMATCH, "the nonce does not commit to these terms")
    return None


def check_lifecycle(
    payload: LifecyclePayload, requirements: AuthCaptureRequirements, *, refund_collector: str
) -> WireRefusal | None:
    """The spec's lifecycle steps 1-5: the payment is this offer's, the consents the server's."""
    extra, info = requirements.extra, payload.info
    if extra.receiver_authorizer == ZERO_ADDRESS:
        return WireRefusal(
            ERR_LIFECYCLE_NOT_RELAYED, "without a receiverAuthorizer the lifecycle is not relayed"
        )
    if info.operator != extra.capture_authorizer:
        return WireRefusal(ERR_OPERATOR_MISMATCH, "paymentInfo.operator is not captureAuthorizer")
    if info.salt != salt_binding(extra.receiver_authorizer, extra.policy, payload.salt_nonce):
        return WireRefusal(ERR_SALT_BINDING_MISMATCH, "paymentInfo.salt is not bound to saltNonce")
    if requirements.payment_info(info.payer, info.salt, info.pre_approval_expiry) != info:
        return WireRefusal(ERR_REQUIREMENTS_MISMATCH, "paymentInfo differs from the requirements")
    domain = OperatorDomain.of(requirements)
    info_hash = payment_hash(requirements, info)
    authorizer = extra.receiver_authorizer
    if isinstance(payload, CapturePayload):
        expected = PaymentState(True, payload.expected_capturable, payload.expected_refundable)
        digest = domain.capture_digest(
            info_hash, payload.amount, payload.fee_amount, payload.fee_receiver, expected
        )
        void_signature = payload.void_authorizer_signature
        void_digest = domain.void_digest(info_hash)
        if void_signature is not None and recover_digest(void_digest, void_signature) != authorizer:
            return WireRefusal(
                ERR_VOID_AUTHORIZER_SIGNATURE, "the Void consent is not the authorizer's"
            )
    elif isinstance(payload, VoidPayload):
        digest = domain.void_digest(info_hash)
    else:
        expected = PaymentState(True, payload.expected_capturable, payload.expected_refundable)
        digest = domain.refund_digest(info_hash, payload.amount, refund_collector, expected)
    if recover_digest(digest, payload.authorizer_signature) != authorizer:
        return WireRefusal(ERR_AUTHORIZER_SIGNATURE, "the consent is not receiverAuthorizer's")
    return None


def _expected(payload: CapturePayload | RefundPayload, state: PaymentState) -> WireRefusal | None:
    seen = (state.capturable_amount, state.refundable_amount)
    if seen == (payload.expected_capturable, payload.expected_refundable):
        return None
    return WireRefusal(
        ERR_UNEXPECTED_PAYMENT_STATE,
        f"the escrow holds capturable {seen[0]}, refundable {seen[1]}: "
        "not what the consent expected (used already?)",
    )


@dataclass(frozen=True, slots=True)
class _Move:
    """What a capture or a refund is called in its refusals, and their codes."""

    name: str  # "capture", "refund"
    deadline_expired: str  # the code past its deadline
    over: str  # the code for an amount over what it may move
    available: str  # what it may move, as the detail names it


_CAPTURE: Final = _Move(
    "capture", ERR_CAPTURE_DEADLINE_EXPIRED, ERR_INSUFFICIENT_AUTHORIZATION, "the hold of"
)
_REFUND: Final = _Move(
    "refund", ERR_REFUND_DEADLINE_EXPIRED, ERR_REFUND_EXCEEDS_CAPTURE, "the refundable"
)


def _move_within(
    move: _Move,
    payload: CapturePayload | RefundPayload,
    state: PaymentState,
    *,
    now: int,
    deadline: int,
    available: int,
) -> WireRefusal | None:
    """Before ``deadline``, the single-use balance check, then more than 0 and at most ``available``."""
    if now >= deadline:
        return WireRefusal(move.deadline_expired, f"the {move.name} deadline has passed")
    refused = _expected(payload, state)
    if refused is not None:
        return refused
    if payload.amount == 0:
        return WireRefusal(ERR_AMOUNT_MISMATCH, f"a {move.name} must be of more than 0")
    if payload.amount > available:
        return WireRefusal(
            move.over, f"{move.name} of {payload.amount} over {move.available} {available}"
        )
    return None


def check_capture(
    payload: CapturePayload, info: PaymentInfo, state: PaymentState, *, now: int
) -> WireRefusal | None:
    """Deadline, the single-use balance check, the amount within the hold, the fee within bounds."""
    refused = _move_within(
        _CAPTURE,
        payload,
        state,
        now=now,
        deadline=info.authorization_expiry,
        available=state.capturable_amount,
    )
    if refused is not None:
        return refused
    if payload.void_authorizer_signature is not None and payload.amount == state.capturable_amount:
        return WireRefusal(ERR_VOID_REMAINDER_FULL_CAPTURE, "a full capture leaves nothing to void")
    low, high = (fee_amount(payload.amount, bps) for bps in (info.min_fee_bps, info.max_fee_bps))
    if not low <= payload.fee_amount <= high:
        return WireRefusal(
            ESCROW_ERROR_REASONS["fee_amount_out_of_range"],
            f"feeAmount must lie between {low} and {high}",
        )
    if info.fee_receiver != ZERO_ADDRESS and payload.fee_receiver != info.fee_receiver:
        return WireRefusal(
            ESCROW_ERROR_REASONS["invalid_fee_receiver"], "feeReceiver is not the committed one"
        )
    return None


def check_void(state: PaymentState) -> WireRefusal | None:
    """A void needs a hold to release."""
    if state.capturable_amount == 0:
        return WireRefusal(ERR_ZERO_AUTHORIZATION, "no hold remains to void")
    return None


def check_refund(
    payload: RefundPayload, info: PaymentInfo, state: PaymentState, *, now: int
) -> WireRefusal | None:
    """Deadline, the single-use balance check, the amount within what was captured."""
    return _move_within(
        _REFUND,
        payload,
        state,
        now=now,
        deadline=info.refund_expiry,
        available=state.refundable_amount,
    )
