"""Signing both sides of an ``auth-capture`` payment: the client's collect payload and the server's consents.

The client signs once (:func:`collect_payload`): a ``ReceiveWithAuthorization``
of the whole hold to the ERC-3009 collector, whose nonce is the payment's
payer-agnostic hash. When the offer names a receiver authorizer the salt is
*bound*: ``salt = keccak256(SALT_BINDING_TYPEHASH, receiverAuthorizer, policy,
saltNonce)`` and ``saltNonce`` travels beside it.

The server consents to each ``capture``, ``void`` and ``refund`` with an
EIP-712 signature by ``extra.receiverAuthorizer`` (:class:`OperatorDomain`,
the spec's ``Capture``/``Void``/``Refund`` types). ``Capture`` and ``Refund``
bind the balances the server expects in ``paymentState``, so a consent is
good for exactly one move. :func:`capture_payload`, :func:`void_payload` and
:func:`refund_payload` build the lifecycle payloads a server sends to
``/settle`` (or hands to ``AuthCaptureFacilitator`` in-process).

Every signature is recovered right after it is made (encode → sign → recover).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

from farthing.paywall.schemes.auth_capture.contract import PaymentState
from farthing.paywall.schemes.auth_capture.payment import (
    PaymentInfo,
    fee_amount,
    salt_binding,
    sign_payment_authorization,
)
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCaptureRequirements,
    CapturePayload,
    CollectPayload,
    RefundPayload,
    VoidPayload,
)
from farthing.paywall.schemes.typed_data import sign_checked, type_hash, typed_digest
from farthing.wallet.abi_words import address_word, keccak, word
from farthing.wallet.address import checksum
from farthing.wallet.eip712 import domain_separator
from farthing.wallet.eip3009 import TokenDomain
from farthing.wallet.networks import CANONICAL_AUTH_CAPTURE_CONTRACTS, AuthCaptureContracts
from farthing.wallet.signer import Signer

__all__ = [
    "CAPTURE_TYPES",
    "OPERATOR_DOMAIN_NAME",
    "OPERATOR_DOMAIN_VERSION",
    "REFUND_TYPES",
    "VOID_TYPES",
    "OperatorDomain",
    "capture_payload",
    "collect_payload",
    "payment_hash",
    "refund_payload",
    "sign_capture",
    "sign_refund",
    "sign_void",
    "void_payload",
]

OPERATOR_DOMAIN_NAME: Final = "x402 Auth Capture Operator"
OPERATOR_DOMAIN_VERSION: Final = "1"

CAPTURE_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Capture": [
        {"name": "paymentInfoHash", "type": "bytes32"},
        {"name": "amount", "type": "uint256"},
        {"name": "feeAmount", "type": "uint256"},
        {"name": "feeReceiver", "type": "address"},
        {"name": "expectedCapturableAmount", "type": "uint256"},
        {"name": "expectedRefundableAmount", "type": "uint256"},
    ]
}
VOID_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Void": [{"name": "paymentInfoHash", "type": "bytes32"}]
}
REFUND_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Refund": [
        {"name": "paymentInfoHash", "type": "bytes32"},
        {"name": "amount", "type": "uint256"},
        {"name": "tokenCollector", "type": "address"},
        {"name": "expectedCapturableAmount", "type": "uint256"},
        {"name": "expectedRefundableAmount", "type": "uint256"},
    ]
}


_CAPTURE_TYPEHASH: Final = type_hash(CAPTURE_TYPES, "Capture")
_VOID_TYPEHASH: Final = type_hash(VOID_TYPES, "Void")
_REFUND_TYPEHASH: Final = type_hash(REFUND_TYPES, "Refund")


def _address_word(address: str) -> bytes:
    return address_word(checksum(address))


def payment_hash(requirements: AuthCaptureRequirements, info: PaymentInfo) -> bytes:
    """``paymentInfoHash``: the escrow's ``getHash`` for ``info`` on the requirements' chain."""
    return info.hash(requirements.chain_id, requirements.extra.auth_capture_escrow)


@dataclass(frozen=True, slots=True)
class OperatorDomain:
    """``{"x402 Auth Capture Operator", "1", chainId, captureAuthorizer}``: every consent's domain."""

    chain_id: int
    capture_authorizer: str

    @classmethod
    def of(cls, requirements: AuthCaptureRequirements) -> OperatorDomain:
        return cls(requirements.chain_id, requirements.extra.capture_authorizer)

    def as_eip712(self) -> dict[str, Any]:
        return {
            "name": OPERATOR_DOMAIN_NAME,
            "version": OPERATOR_DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": checksum(self.capture_authorizer),
        }

    def _digest(self, struct_hash: bytes) -> bytes:
        separator = domain_separator(
            OPERATOR_DOMAIN_NAME,
            OPERATOR_DOMAIN_VERSION,
            self.chain_id,
            checksum(self.capture_authorizer),
        )
        return typed_digest(bytes(separator), struct_hash)

    def capture_digest(
        self,
        info_hash: bytes,
        amount: int,
        fee: int,
        fee_receiver: str,
        expected: PaymentState,
    ) -> bytes:
        return self._digest(
            keccak(
                _CAPTURE_TYPEHASH
                + info_hash
                + word(amount)
                + word(fee)
                + _address_word(fee_receiver)
                + word(expected.capturable_amount)
                + word(expected.refundable_amount)
            )
        )

    def void_digest(self, info_hash: bytes) -> bytes:
        return self._digest(keccak(_VOID_TYPEHASH + info_hash))

    def refund_digest(
        self, info_hash: bytes, amount: int, token_collector: str, expected: PaymentState
    ) -> bytes:
        return self._digest(
            keccak(
                _REFUND_TYPEHASH
                + info_hash
                + word(amount)
                + _address_word(token_collector)
                + word(expected.capturable_amount)
                + word(expected.refundable_amount)
            )
        )


def _sign_checked(
    signer: Signer,
    domain: OperatorDomain,
    types: dict[str, list[dict[str, str]]],
    primary: str,
    message: dict[str, Any],
    digest: bytes,
) -> bytes:
    return sign_checked(signer, domain.as_eip712(), types, primary, message, digest, what="consent")


def sign_capture(
    authorizer: Signer,
    domain: OperatorDomain,
    info_hash: bytes,
    amount: int,
    *,
    fee: int,
    fee_receiver: str,
    expected: PaymentState,
) -> bytes:
    """The receiver authorizer's ``Capture`` consent (single-use through ``expected``)."""
    message = {
        "paymentInfoHash": info_hash,
        "amount": amount,
        "feeAmount": fee,
        "feeReceiver": checksum(fee_receiver),
        "expectedCapturableAmount": expected.capturable_amount,
        "expectedRefundableAmount": expected.refundable_amount,
    }
    digest = domain.capture_digest(info_hash, amount, fee, fee_receiver, expected)
    return _sign_checked(authorizer, domain, CAPTURE_TYPES, "Capture", message, digest)


def sign_void(authorizer: Signer, domain: OperatorDomain, info_hash: bytes) -> bytes:
    """The receiver authorizer's ``Void`` consent."""
    digest = domain.void_digest(info_hash)
    message = {"paymentInfoHash": info_hash}
    return _sign_checked(authorizer, domain, VOID_TYPES, "Void", message, digest)


def sign_refund(
    authorizer: Signer,
    domain: OperatorDomain,
    info_hash: bytes,
    amount: int,
    *,
    token_collector: str,
    expected: PaymentState,
) -> bytes:
    """The receiver authorizer's ``Refund`` consent (single-use through ``expected``)."""
    message = {
        "paymentInfoHash": info_hash,
        "amount": amount,
        "tokenCollector": checksum(token_collector),
        "expectedCapturableAmount": expected.capturable_amount,
        "expectedRefundableAmount": expected.refundable_amount,
    }
    digest = domain.refund_digest(info_hash, amount, token_collector, expected)
    return _sign_checked(authorizer, domain, REFUND_TYPES, "Refund", message, digest)


# ---------------------------------------------------------------- payloads


def collect_payload(
    payer: Signer,
    requirements: AuthCaptureRequirements,
    *,
    now: int,
    salt_nonce: bytes | None = None,
    contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS,
) -> tuple[CollectPayload, PaymentInfo]:
    """The client's payload for ``requirements``, and the ``PaymentInfo`` it commits to.

    ``preApprovalExpiry`` (the authorization's ``validBefore``) is ``now +
    maxTimeoutSeconds``. ``salt_nonce`` defaults to 32 fresh random bytes.
    """
    extra = requirements.extra
    random = secrets.token_bytes(32) if salt_nonce is None else salt_nonce
    salt = salt_binding(extra.receiver_authorizer, extra.policy, random) if extra.bound else random
    info = requirements.payment_info(payer.address, salt, now + requirements.max_timeout_seconds)
    domain = TokenDomain(extra.name, extra.version, requirements.chain_id, requirements.asset)
    signed = sign_payment_authorization(payer, info, domain, contracts=contracts)
    payload = CollectPayload(
        signed.authorization, signed.signature, salt, random if extra.bound else None
    )
    return payload, info


def capture_payload(
    authorizer: Signer,
    requirements: AuthCaptureRequirements,
    info: PaymentInfo,
    salt_nonce: bytes,
    amount: int,
    *,
    expected: PaymentState,
    fee: int | None = None,
    fee_receiver: str | None = None,
    void_rest: bool = False,
    idempotency_key: str | None = None,
) -> CapturePayload:
    """A ``capture`` payload consented to by ``authorizer`` against the balances ``expected``.

    The fee defaults to the offer's floor (``amount * minFeeBps / 10000``) to
    ``extra.feeRecipient``. ``void_rest`` adds the ``Void`` consent, so the
    same settle releases what remains of the hold.
    """
    domain = OperatorDomain.of(requirements)
    info_hash = payment_hash(requirements, info)
    fee = fee_amount(amount, info.min_fee_bps) if fee is None else fee
    receiver = requirements.extra.fee_recipient if fee_receiver is None else checksum(fee_receiver)
    signature = sign_capture(
        authorizer, domain, info_hash, amount, fee=fee, fee_receiver=receiver, expected=expected
    )
    void_signature = sign_void(authorizer, domain, info_hash) if void_rest else None
    return CapturePayload(
        info, salt_nonce, amount, fee, receiver, expected.capturable_amount,
        expected.refundable_amount, signature, void_signature, idempotency_key,
    )  # fmt: skip


def void_payload(
    authorizer: Signer,
    requirements: AuthCaptureRequirements,
    info: PaymentInfo,
    salt_nonce: bytes,
    *,
    idempotency_key: str | None = None,
) -> VoidPayload:
    """A ``void`` payload consented to by ``authorizer``."""
    signature = sign_void(
        authorizer, OperatorDomain.of(requirements), payment_hash(requirements, info)
    )
    return VoidPayload(info, salt_nonce, signature, idempotency_key)


def refund_payload(
    authorizer: Signer,
    requirements: AuthCaptureRequirements,
    info: PaymentInfo,
    salt_nonce: bytes,
    amount: int,
    *,
    expected: PaymentState,
    idempotency_key: str | None = None,
    contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS,
) -> RefundPayload:
    """A ``refund`` payload consented to by ``authorizer`` against the balances ``expected``."""
    signature = sign_refund(
        authorizer,
        OperatorDomain.of(requirements),
        payment_hash(requirements, info),
        amount,
        token_collector=contracts.operator_refund_collector,
        expected=expected,
    )
    return RefundPayload(
        info, salt_nonce, amount, expected.capturable_amount, expected.refundable_amount,
        signature, idempotency_key,
    )  # fmt: skip
