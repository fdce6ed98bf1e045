"""The x402 ``auth-capture`` wire: requirements ``extra``, the client's payload, lifecycle payloads.

Every shape is the spec's camelCase JSON (``specs/schemes/auth-capture/
scheme_auth_capture_evm.md`` in x402-foundation/x402). What this facilitator
serves is one corner of the spec, and the rest is refused with the spec's code:

- ``extra.operatorType`` ``"delegated"`` (or absent): the facilitator is the
  operator. ``"custom"`` and ``"policy"`` are
  ``invalid_auth_capture_evm_unsupported_operator_type``;
- ``extra.assetTransferMethod`` ``"eip3009"`` (or absent). ``"permit2"`` (and
  a ``permit2Authorization`` payload) is
  ``invalid_auth_capture_evm_unsupported_asset_transfer_method``;
- ``extra.paymentFlow`` ``"escrow"`` (or absent). ``"authorization"`` (a
  terminal ``charge``) and ``autoCapture: true`` are
  ``invalid_auth_capture_evm_unsupported_payment_flow``;
- the v1.1 escrow only: any other ``extra.authCaptureEscrow`` is
  ``invalid_auth_capture_evm_extra``.

Parsing is strict: amounts are decimal strings and become ``int``; expiries
and basis points are JSON integers, never booleans; ``salt``/``saltNonce``
are full-width ``0x`` + 64 hex digits. Malformed input is a
:class:`WireRefusal` with the spec's code and a detail that never echoes the
input; nothing here raises on what a client sends.

The server's consent to ``capture``, ``void`` and ``refund`` is an EIP-712
signature by ``extra.receiverAuthorizer`` in the domain ``{"x402 Auth
Capture Operator", "1", chainId, captureAuthorizer}`` (:class:`OperatorDomain`;
:func:`sign_capture`, :func:`sign_void`, :func:`sign_refund`). ``Capture``
and ``Refund`` bind the escrow balances the server expects to find, so each
consent is single-use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from farthing.paywall.schemes import fields
from farthing.paywall.schemes.auth_capture.payment import (
    AMOUNT_MAX,
    EXPIRY_MAX,
    FEE_BPS_MAX,
    PaymentInfo,
)
from farthing.paywall.schemes.auth_capture.types import (
    ERR_EXTRA,
    ERR_INVALID_NETWORK,
    ERR_PAYLOAD_FORMAT,
    ERR_PAYLOAD_METHOD_MISMATCH,
    ERR_PAYLOAD_TYPE,
    ERR_POLICY,
    ERR_SCHEME,
    ERR_UNSUPPORTED_ASSET_TRANSFER_METHOD,
    ERR_UNSUPPORTED_OPERATOR_TYPE,
    ERR_UNSUPPORTED_PAYMENT_FLOW,
    ERR_VOID_AUTHORIZER_SIGNATURE,
)
from farthing.paywall.schemes.fields import Malformed, WireRefusal
from farthing.paywall.wire import AcceptsEntry
from farthing.wallet.address import ZERO_ADDRESS
from farthing.wallet.eip3009 import Authorization
from farthing.wallet.errors import WalletError
from farthing.wallet.money import UINT256_MAX
from farthing.wallet.networks import CANONICAL_AUTH_CAPTURE_CONTRACTS

__all__ = [
    "FLOW_ESCROW",
    "IDEMPOTENCY_KEY_RE",
    "METHOD_EIP3009",
    "OPERATOR_DELEGATED",
    "PAYLOAD_CAPTURE",
    "PAYLOAD_REFUND",
    "PAYLOAD_VOID",
    "SCHEME",
    "AuthCaptureExtra",
    "AuthCapturePayment",
    "AuthCaptureRequirements",
    "CapturePayload",
    "CollectPayload",
    "RefundPayload",
    "VoidPayload",
    "parse_extra",
    "parse_payload",
    "parse_payment",
    "parse_requirements",
]

SCHEME: Final = "auth-capture"
OPERATOR_DELEGATED: Final = "delegated"
FLOW_ESCROW: Final = "escrow"
METHOD_EIP3009: Final = "eip3009"
PAYLOAD_CAPTURE: Final = "capture"
PAYLOAD_VOID: Final = "void"
PAYLOAD_REFUND: Final = "refund"

# Our own extension: a caller's key for one lifecycle operation (the spec asks
# for one per operation and names no field). Absent, the consent's digest is the key.
IDEMPOTENCY_KEY_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

_NETWORK_RE: Final = re.compile(r"eip155:[1-9][0-9]{0,19}")
_TEXT_MAX: Final = 2048
_TIMEOUT_MAX_S: Final = 30 * 86400


def _opt_address(data: Mapping[str, Any], name: str, reason: str) -> str:
    value = data.get(name)
    return ZERO_ADDRESS if value is None else fields.address(value, name, reason)


# ---------------------------------------------------------------- requirements


@dataclass(frozen=True, slots=True)
class AuthCaptureExtra:
    """``requirements.extra`` of an auth-capture offer we can serve (delegated, EIP-3009, escrow)."""

    name: str  # the token's EIP-712 name
    version: str  # the token's EIP-712 version
    capture_authorizer: str  # the operator: PaymentInfo.operator, our submitter
    capture_deadline: int  # PaymentInfo.authorizationExpiry
    refund_deadline: int  # PaymentInfo.refundExpiry
    fee_recipient: str  # PaymentInfo.feeReceiver
    min_fee_bps: int
    max_fee_bps: int
    receiver_authorizer: str = ZERO_ADDRESS  # signs the server's consents; zero: authorize-only
    policy: str = ZERO_ADDRESS  # must be zero for "delegated"
    auth_capture_escrow: str = CANONICAL_AUTH_CAPTURE_CONTRACTS.escrow
    capture_mode: str = "sync"  # "sync" | "deferred": the server's choice, carried through

    @property
    def bound(self) -> bool:
        """Whether the salt commits to the receiver authorizer and policy (``saltNonce`` on the wire)."""
        return self.receiver_authorizer != ZERO_ADDRESS or self.policy != ZERO_ADDRESS

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "authCaptureEscrow": self.auth_capture_escrow,
            "captureAuthorizer": self.capture_authorizer,
            "operatorType": OPERATOR_DELEGATED,
            "receiverAuthorizer": self.receiver_authorizer,
            "policy": self.policy,
            "paymentFlow": FLOW_ESCROW,
            "captureMode": self.capture_mode,
            "captureDeadline": self.capture_deadline,
            "refundDeadline": self.refund_deadline,
            "minFeeBps": self.min_fee_bps,
            "maxFeeBps": self.max_fee_bps,
            "feeRecipient": self.fee_recipient,
            "assetTransferMethod": METHOD_EIP3009,
        }


def _parse_extra(data: object) -> AuthCaptureExtra:
    if not isinstance(data, Mapping):
        raise Malformed("extra must be an object", ERR_EXTRA)
    flow = data.get("paymentFlow", FLOW_ESCROW)
    if data.get("autoCapture") is True:
        raise Malformed("autoCapture was removed: use paymentFlow", ERR_UNSUPPORTED_PAYMENT_FLOW)
    if flow != FLOW_ESCROW:
        raise Malformed(
            "this facilitator settles paymentFlow 'escrow' only", ERR_UNSUPPORTED_PAYMENT_FLOW
        )
    operator_type = data.get("operatorType", OPERATOR_DELEGATED)
    if operator_type != OPERATOR_DELEGATED:
        raise Malformed(
            "this facilitator serves operatorType 'delegated' only", ERR_UNSUPPORTED_OPERATOR_TYPE
        )
    method = data.get("assetTransferMethod", METHOD_EIP3009)
    if method != METHOD_EIP3009:
        raise Malformed(
            "this facilitator collects through ERC-3009 only (no Permit2)",
            ERR_UNSUPPORTED_ASSET_TRANSFER_METHOD,
        )
    mode = data.get("captureMode", "sync")
    if mode not in ("sync", "deferred"):
        raise Malformed("captureMode must be 'sync' or 'deferred'", ERR_EXTRA)
    name, version = (
        fields.need(data, "name", "extra", ERR_EXTRA),
        fields.need(data, "version", "extra", ERR_EXTRA),
    )
    for label, text in (("name", name), ("version", version)):
        if not isinstance(text, str) or not 0 < len(text) <= 64:
            raise Malformed(f"extra.{label} must be the token's EIP-712 {label}", ERR_EXTRA)
    escrow = _opt_address(data, "authCaptureEscrow", ERR_EXTRA)
    if escrow not in (ZERO_ADDRESS, CANONICAL_AUTH_CAPTURE_CONTRACTS.escrow):
        raise Malformed(
            "authCaptureEscrow must be the v1.1 escrow (the only one served)", ERR_EXTRA
        )
    policy = _opt_address(data, "policy", ERR_EXTRA)
    if policy != ZERO_ADDRESS:
        raise Malformed("policy must be absent or zero for operatorType 'delegated'", ERR_POLICY)
    min_bps = fields.integer(
        fields.need(data, "minFeeBps", "extra", ERR_EXTRA), "minFeeBps", FEE_BPS_MAX, ERR_EXTRA
    )
    max_bps = fields.integer(
        fields.need(data, "maxFeeBps", "extra", ERR_EXTRA), "maxFeeBps", FEE_BPS_MAX, ERR_EXTRA
    )
    fee_recipient = fields.address(
        fields.need(data, "feeRecipient", "extra", ERR_EXTRA), "feeRecipient", ERR_EXTRA
    )
    if min_bps > max_bps:
        raise Malformed("minFeeBps must not exceed maxFeeBps", ERR_EXTRA)
    if fee_recipient == ZERO_ADDRESS and max_bps != 0:
        raise Malformed("a zero feeRecipient needs minFeeBps == maxFeeBps == 0", ERR_EXTRA)
    return AuthCaptureExtra(
        name=name,
        version=version,
        capture_authorizer=fields.address(
            fields.need(data, "captureAuthorizer", "extra", ERR_EXTRA),
            "captureAuthorizer",
            ERR_EXTRA,
        ),
        capture_deadline=fields.integer(
            fields.need(data, "captureDeadline", "extra", ERR_EXTRA),
            "captureDeadline",
            EXPIRY_MAX,
            ERR_EXTRA,
        ),
        refund_deadline=fields.integer(
            fields.need(data, "refundDeadline", "extra", ERR_EXTRA),
            "refundDeadline",
            EXPIRY_MAX,
            ERR_EXTRA,
        ),
        fee_recipient=fee_recipient,
        min_fee_bps=min_bps,
        max_fee_bps=max_bps,
        receiver_authorizer=_opt_address(data, "receiverAuthorizer", ERR_EXTRA),
        policy=policy,
        auth_capture_escrow=CANONICAL_AUTH_CAPTURE_CONTRACTS.escrow,
        capture_mode=mode,
    )


def parse_extra(data: object) -> AuthCaptureExtra | WireRefusal:
    """``requirements.extra``; a refusal carries the spec's code."""
    return fields.refusing(_parse_extra, data)


@dataclass(frozen=True, slots=True)
class AuthCaptureRequirements(AcceptsEntry):
    """One ``auth-capture`` entry of ``accepts``: ``amount`` is the hold (``maxAmount``)."""

    network: str
    asset: str
    amount: int
    pay_to: str
    max_timeout_seconds: int
    extra: AuthCaptureExtra
    scheme: str = SCHEME

    def extra_wire(self) -> dict[str, Any]:
        return self.extra.to_wire()

    def payment_info(self, payer: str, salt: bytes, pre_approval_expiry: int) -> PaymentInfo:
        """The ``PaymentInfo`` these terms dictate for one payer, salt and pre-approval expiry."""
        e = self.extra
        return PaymentInfo(
            operator=e.capture_authorizer,
            payer=payer,
            receiver=self.pay_to,
            token=self.asset,
            max_amount=self.amount,
            pre_approval_expiry=pre_approval_expiry,
            authorization_expiry=e.capture_deadline,
            refund_expiry=e.refund_deadline,
            min_fee_bps=e.min_fee_bps,
            max_fee_bps=e.max_fee_bps,
            fee_receiver=e.fee_recipient,
            salt=salt,
        )


def _parse_requirements(data: object) -> AuthCaptureRequirements:
    if not isinstance(data, Mapping):
        raise Malformed("the requirements must be an object", ERR_SCHEME)
    if data.get("scheme") != SCHEME:
        raise Malformed(f"scheme must be {SCHEME!r}", ERR_SCHEME)
    network = data.get("network")
    if not isinstance(network, str) or not _NETWORK_RE.fullmatch(network):
        raise Malformed("network must be eip155:<chainId>", ERR_INVALID_NETWORK)
    timeout = fields.need(data, "maxTimeoutSeconds", "requirements", ERR_SCHEME)
    return AuthCaptureRequirements(
        network=network,
        asset=fields.address(data.get("asset"), "asset", ERR_SCHEME),
        amount=fields.amount(data.get("amount"), "amount", AMOUNT_MAX, ERR_SCHEME),
        pay_to=fields.address(data.get("payTo"), "payTo", ERR_SCHEME),
        max_timeout_seconds=fields.integer(
            timeout, "maxTimeoutSeconds", _TIMEOUT_MAX_S, ERR_SCHEME
        ),
        extra=_parse_extra(data.get("extra")),
    )


def parse_requirements(data: object) -> AuthCaptureRequirements | WireRefusal:
    """An ``accepts``/``accepted``/``paymentRequirements`` object of the auth-capture scheme."""
    return fields.refusing(_parse_requirements, data)


# ---------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class CollectPayload:
    """The client's payload: one ``ReceiveWithAuthorization`` to the ERC-3009 collector, and the salt."""

    authorization: Authorization
    signature: bytes  # the collectorData, passed to the escrow untouched
    salt: bytes  # PaymentInfo.salt
    salt_nonce: bytes | None = None  # present iff the salt is bound

    @property
    def payer(self) -> str:
        return self.authorization.from_address

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "authorization": self.authorization.to_wire(),
            "signature": fields.to_hex(self.signature),
            "salt": fields.to_hex(self.salt),
        }
        if self.salt_nonce is not None:
            out["saltNonce"] = fields.to_hex(self.salt_nonce)
        return out


@dataclass(frozen=True, slots=True)
class CapturePayload:
    """``payload.type == "capture"``: pay ``amount`` of the hold out, with the server's consent.

    With ``void_authorizer_signature`` the same settle then voids the rest
    (the spec's sync partial close-out).
    """

    info: PaymentInfo
    salt_nonce: bytes
    amount: int
    fee_amount: int
    fee_receiver: str
    expected_capturable: int
    expected_refundable: int
    authorizer_signature: bytes
    void_authorizer_signature: bytes | None = None
    idempotency_key: str | None = None
    type: str = PAYLOAD_CAPTURE

    def to_wire(self) -> dict[str, Any]:
        terms = {
            "amount": str(self.amount),
            "feeAmount": str(self.fee_amount),
            "feeReceiver": self.fee_receiver,
            "expectedCapturableAmount": str(self.expected_capturable),
            "expectedRefundableAmount": str(self.expected_refundable),
        }
        return _lifecycle_wire(
            PAYLOAD_CAPTURE, self, terms, void_authorizer_signature=self.void_authorizer_signature
        )


@dataclass(frozen=True, slots=True)
class VoidPayload:
    """``payload.type == "void"``: release the whole remaining hold to the payer."""

    info: PaymentInfo
    salt_nonce: bytes
    authorizer_signature: bytes
    idempotency_key: str | None = None
    type: str = PAYLOAD_VOID

    def to_wire(self) -> dict[str, Any]:
        return _lifecycle_wire(PAYLOAD_VOID, self, {})


@dataclass(frozen=True, slots=True)
class RefundPayload:
    """``payload.type == "refund"``: return ``amount`` of what was captured (operator-funded)."""

    info: PaymentInfo
    salt_nonce: bytes
    amount: int
    expected_capturable: int
    expected_refundable: int
    authorizer_signature: bytes
    idempotency_key: str | None = None
    type: str = PAYLOAD_REFUND

    def to_wire(self) -> dict[str, Any]:
        terms = {
            "amount": str(self.amount),
            "expectedCapturableAmount": str(self.expected_capturable),
            "expectedRefundableAmount": str(self.expected_refundable),
        }
        return _lifecycle_wire(PAYLOAD_REFUND, self, terms)


LifecyclePayload = CapturePayload | VoidPayload | RefundPayload


def _lifecycle_wire(
    kind: str,
    payload: LifecyclePayload,
    terms: Mapping[str, str],
    *,
    void_authorizer_signature: bytes | None = None,
) -> dict[str, Any]:
    """A lifecycle payload on the wire: type, payment and salt nonce, its own terms, the consent, the key."""
    out: dict[str, Any] = {
        "type": kind,
        "paymentInfo": payload.info.to_wire(),
        "saltNonce": fields.to_hex(payload.salt_nonce),
        **terms,
        "authorizerSignature": fields.to_hex(payload.authorizer_signature),
    }
    if void_authorizer_signature is not None:
        out["voidAuthorizerSignature"] = fields.to_hex(void_authorizer_signature)
    if payload.idempotency_key is not None:
        out["idempotencyKey"] = payload.idempotency_key
    return out


def _idempotency_key(data: Mapping[str, Any]) -> str | None:
    key = data.get("idempotencyKey")
    if key is None:
        return None
    if not isinstance(key, str) or not IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise Malformed("idempotencyKey must be 1-128 of [A-Za-z0-9_.:-]", ERR_PAYLOAD_FORMAT)
    return key


def _info(data: Mapping[str, Any]) -> PaymentInfo:
    try:
        return PaymentInfo.from_wire(
            fields.need(data, "paymentInfo", "payload", ERR_PAYLOAD_FORMAT)
        )
    except WalletError as exc:
        raise Malformed(str(exc), ERR_PAYLOAD_FORMAT) from None


def _parse_payload(data: object) -> CollectPayload | LifecyclePayload:
    if not isinstance(data, Mapping):
        raise Malformed("payload must be an object", ERR_PAYLOAD_FORMAT)

    def need(name: str) -> Any:
        return fields.need(data, name, "payload", ERR_PAYLOAD_FORMAT)

    kind = data.get("type")
    if "type" in data and kind not in (PAYLOAD_CAPTURE, PAYLOAD_VOID, PAYLOAD_REFUND):
        raise Malformed("payload.type must be capture, void or refund", ERR_PAYLOAD_TYPE)
    if kind is None:
        if "permit2Authorization" in data:
            raise Malformed(
                "a Permit2 payload, but the method is eip3009 (the only one served)",
                ERR_PAYLOAD_METHOD_MISMATCH,
            )
        if "authorization" not in data:
            raise Malformed("payload has neither authorization nor type", ERR_PAYLOAD_FORMAT)
        try:
            authorization = Authorization.from_wire(data["authorization"])
        except WalletError as exc:
            raise Malformed(f"authorization: {exc}", ERR_PAYLOAD_FORMAT) from None
        salt_nonce = data.get("saltNonce")
        return CollectPayload(
            authorization,
            fields.signature(need("signature"), "signature", ERR_PAYLOAD_FORMAT),
            fields.bytes32(need("salt"), "salt", ERR_PAYLOAD_FORMAT),
            None
            if salt_nonce is None
            else fields.bytes32(salt_nonce, "saltNonce", ERR_PAYLOAD_FORMAT),
        )
    info = _info(data)
    salt_nonce = fields.bytes32(
        need("saltNonce"),
        "saltNonce",
        ERR_PAYLOAD_FORMAT,
    )
    signature = fields.signature(
        need("authorizerSignature"),
        "authorizerSignature",
        ERR_PAYLOAD_FORMAT,
    )
    key = _idempotency_key(data)
    if kind != PAYLOAD_CAPTURE and "voidAuthorizerSignature" in data:
        raise Malformed(
            "voidAuthorizerSignature belongs on a capture only", ERR_VOID_AUTHORIZER_SIGNATURE
        )
    if kind == PAYLOAD_VOID:
        return VoidPayload(info, salt_nonce, signature, key)

    def amount(name: str) -> int:
        return fields.amount(need(name), name, UINT256_MAX, ERR_PAYLOAD_FORMAT)

    if kind == PAYLOAD_REFUND:
        return RefundPayload(
            info, salt_nonce, amount("amount"), amount("expectedCapturableAmount"),
            amount("expectedRefundableAmount"), signature, key,
        )  # fmt: skip
    if "feeBps" in data:
        raise Malformed("the v1.1 escrow takes feeAmount, not feeBps", ERR_PAYLOAD_FORMAT)
    void_signature = data.get("voidAuthorizerSignature")
    return CapturePayload(
        info,
        salt_nonce,
        amount("amount"),
        amount("feeAmount"),
        fields.address(need("feeReceiver"), "feeReceiver", ERR_PAYLOAD_FORMAT),
        amount("expectedCapturableAmount"),
        amount("expectedRefundableAmount"),
        signature,
        None
        if void_signature is None
        else fields.signature(
            void_signature, "voidAuthorizerSignature", ERR_VOID_AUTHORIZER_SIGNATURE
        ),
        key,
    )


def parse_payload(data: object) -> CollectPayload | LifecyclePayload | WireRefusal:
    """``paymentPayload.payload``: the client's collect payload or a server's lifecycle payload."""
    return fields.refusing(_parse_payload, data)


@dataclass(frozen=True, slots=True)
class AuthCapturePayment:
    """A ``paymentPayload`` of the auth-capture scheme: the terms it ``accepted`` and its payload."""

    accepted: AuthCaptureRequirements
    payload: CollectPayload | LifecyclePayload
    resource_url: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "x402Version": 2,
            "accepted": self.accepted.to_wire(),
            "payload": self.payload.to_wire(),
        }
        if self.resource_url is not None:
            out["resource"] = {"url": self.resource_url}
        return out


def _parse_payment(data: object) -> AuthCapturePayment:
    if not isinstance(data, Mapping):
        raise Malformed("the payment must be an object", ERR_PAYLOAD_FORMAT)
    version = data.get("x402Version")
    if isinstance(version, bool) or version != 2:
        raise Malformed("x402Version must be 2", ERR_PAYLOAD_FORMAT)
    accepted = _parse_requirements(data.get("accepted"))
    payload = _parse_payload(data.get("payload"))
    resource = data.get("resource")
    url = resource.get("url") if isinstance(resource, Mapping) else None
    url = url if isinstance(url, str) and len(url) <= _TEXT_MAX else None
    return AuthCapturePayment(accepted, payload, url)


def parse_payment(data: object) -> AuthCapturePayment | WireRefusal:
    """A ``paymentPayload`` JSON object; refusals carry the spec's code."""
    return fields.refusing(_parse_payment, data)
