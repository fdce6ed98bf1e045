"""x402 ``auth-capture``: the payment's terms, their hashes and the payer's one signature.

A payment is identified by its immutable :class:`PaymentInfo` (the
commerce-payments struct, field for field). Two hashes derive from it, as the
x402 EVM spec sets out:

- ``info.hash(chain_id, escrow)`` is the escrow's ``getHash``: the payment's
  id, keying ``paymentState`` and every event;
- ``info.signature_nonce(chain_id, escrow)`` is the same hash with ``payer``
  zeroed: the nonce of the payer's EIP-3009 ``ReceiveWithAuthorization``.

The payer signs once: a ``ReceiveWithAuthorization`` of ``maxAmount`` to the
ERC-3009 collector, valid from 0 until ``preApprovalExpiry``
(:func:`sign_payment_authorization`); its 65 bytes are the ``collectorData``
of ``authorize`` (or ``charge``). :func:`salt_binding` commits a salt to the
receiver authorizer and policy; :func:`fee_amount` is the escrow's fee bound.

Amounts are ints of the token's atomic units (``uint120`` on chain); expiries
are unix seconds (``uint48``). The escrow binding is ``contract``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from farthing.invariant import invariant
from farthing.wallet.abi_words import (
    address_word,
    checked_address,
    checked_bytes32,
    checked_uint,
    keccak,
    word,
)
from farthing.wallet.address import ZERO_ADDRESS
from farthing.wallet.eip712 import keccak256
from farthing.wallet.eip3009 import (
    Authorization,
    SignedAuthorization,
    TokenDomain,
    sign_receive_authorization,
)
from farthing.wallet.errors import AuthorizationError
from farthing.wallet.networks import CANONICAL_AUTH_CAPTURE_CONTRACTS, AuthCaptureContracts
from farthing.wallet.signer import Signer

__all__ = [
    "AMOUNT_MAX",
    "EXPIRY_MAX",
    "FEE_BPS_MAX",
    "PAYMENT_INFO_TYPE",
    "PAYMENT_INFO_TYPEHASH",
    "SALT_BINDING_TYPEHASH",
    "PaymentInfo",
    "fee_amount",
    "payment_authorization",
    "salt_binding",
    "sign_payment_authorization",
]

AMOUNT_MAX: Final = 2**120 - 1  # uint120, the escrow's amounts
EXPIRY_MAX: Final = 2**48 - 1  # uint48, its expiries (unix seconds)
_UINT16_MAX: Final = 2**16 - 1
FEE_BPS_MAX: Final = 10_000

PAYMENT_INFO_TYPE: Final = (
    "PaymentInfo(address operator,address payer,address receiver,address token,"
    "uint120 maxAmount,uint48 preApprovalExpiry,uint48 authorizationExpiry,"
    "uint48 refundExpiry,uint16 minFeeBps,uint16 maxFeeBps,address feeReceiver,uint256 salt)"
)
PAYMENT_INFO_TYPEHASH: Final = bytes(keccak256(PAYMENT_INFO_TYPE.encode()))
SALT_BINDING_TYPEHASH: Final = bytes(
    keccak256(
        b"x402AuthCaptureSaltBinding(address receiverAuthorizer,address policy,uint256 saltNonce)"
    )
)


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    """The commerce-payments ``PaymentInfo``: every term of one payment, immutable.

    Addresses are checksummed, amounts and expiries are ints, ``salt`` is 32
    bytes (the ``uint256`` those bytes denote on chain). Ranges are checked
    here; the orderings (``preApprovalExpiry <= authorizationExpiry <=
    refundExpiry``, ``minFeeBps <= maxFeeBps <= 10000``) are the escrow's to
    refuse, so a caller sees the contract's own reason.
    """

    operator: str
    payer: str
    receiver: str
    token: str
    max_amount: int
    pre_approval_expiry: int
    authorization_expiry: int
    refund_expiry: int
    min_fee_bps: int
    max_fee_bps: int
    fee_receiver: str
    salt: bytes

    def __post_init__(self) -> None:
        for name in ("operator", "payer", "receiver", "token", "fee_receiver"):
            object.__setattr__(self, name, checked_address(name, getattr(self, name)))
        checked_uint("max_amount", self.max_amount, AMOUNT_MAX)
        for name in ("pre_approval_expiry", "authorization_expiry", "refund_expiry"):
            checked_uint(name, getattr(self, name), EXPIRY_MAX)
        checked_uint("min_fee_bps", self.min_fee_bps, _UINT16_MAX)
        checked_uint("max_fee_bps", self.max_fee_bps, _UINT16_MAX)
        object.__setattr__(self, "salt", checked_bytes32("salt", self.salt))

    def to_abi(self) -> tuple[Any, ...]:
        """The ``PaymentInfo`` tuple for eth-abi (``salt`` as its ``uint256``)."""
        return (
            self.operator,
            self.payer,
            self.receiver,
            self.token,
            self.max_amount,
            self.pre_approval_expiry,
            self.authorization_expiry,
            self.refund_expiry,
            self.min_fee_bps,
            self.max_fee_bps,
            self.fee_receiver,
            int.from_bytes(self.salt, "big"),
        )

    @classmethod
    def from_abi(cls, values: Sequence[Any]) -> PaymentInfo:
        """The inverse of :meth:`to_abi` (as eth-abi decodes an event's struct)."""
        (op, payer, receiver, token, max_amount, pre, auth, refund, lo, hi, fee_to, salt) = values
        return cls(
            op, payer, receiver, token, max_amount, pre, auth, refund, lo, hi, fee_to,
            int(salt).to_bytes(32, "big"),
        )  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        """The spec's camelCase ``paymentInfo`` (lifecycle payloads): amounts as decimal strings."""
        return {
            "operator": self.operator,
            "payer": self.payer,
            "receiver": self.receiver,
            "token": self.token,
            "maxAmount": str(self.max_amount),
            "preApprovalExpiry": self.pre_approval_expiry,
            "authorizationExpiry": self.authorization_expiry,
            "refundExpiry": self.refund_expiry,
            "minFeeBps": self.min_fee_bps,
            "maxFeeBps": self.max_fee_bps,
            "feeReceiver": self.fee_receiver,
            "salt": "0x" + self.salt.hex(),
        }

    @classmethod
    def from_wire(cls, data: object) -> PaymentInfo:
        """Parse a wire ``paymentInfo``; malformed input raises ``AuthorizationError``."""
        if not isinstance(data, dict):
            raise AuthorizationError("paymentInfo must be an object")
        max_amount = data.get("maxAmount")
        if not isinstance(max_amount, str) or not re.fullmatch(r"[0-9]{1,37}", max_amount):
            raise AuthorizationError("paymentInfo.maxAmount must be a decimal string")
        try:
            return cls(
                operator=data["operator"],
                payer=data["payer"],
                receiver=data["receiver"],
                token=data["token"],
                max_amount=int(max_amount),
                pre_approval_expiry=data["preApprovalExpiry"],
                authorization_expiry=data["authorizationExpiry"],
                refund_expiry=data["refundExpiry"],
                min_fee_bps=data["minFeeBps"],
                max_fee_bps=data["maxFeeBps"],
                fee_receiver=data["feeReceiver"],
                salt=data["salt"],
            )
        except KeyError as exc:
            raise AuthorizationError(f"paymentInfo is missing {exc.args[0]}") from None

    def struct_hash(self) -> bytes:
        """``keccak256(abi.encode(PAYMENT_INFO_TYPEHASH, paymentInfo))``."""
        return keccak(
            PAYMENT_INFO_TYPEHASH
            + address_word(self.operator)
            + address_word(self.payer)
            + address_word(self.receiver)
            + address_word(self.token)
            + word(self.max_amount)
            + word(self.pre_approval_expiry)
            + word(self.authorization_expiry)
            + word(self.refund_expiry)
            + word(self.min_fee_bps)
            + word(self.max_fee_bps)
            + address_word(self.fee_receiver)
            + self.salt
        )

    def hash(self, chain_id: int, escrow: str = CANONICAL_AUTH_CAPTURE_CONTRACTS.escrow) -> bytes:
        """The escrow's ``getHash``: ``keccak256(abi.encode(chainId, escrow, structHash))``."""
        invariant(chain_id > 0, "a chain id is positive")
        escrow_address = checked_address("escrow", escrow)
        return keccak(word(chain_id) + address_word(escrow_address) + self.struct_hash())

    def signature_nonce(
        self, chain_id: int, escrow: str = CANONICAL_AUTH_CAPTURE_CONTRACTS.escrow
    ) -> bytes:
        """The payer's EIP-3009 nonce: :meth:`hash` of this info with ``payer`` zeroed."""
        return replace(self, payer=ZERO_ADDRESS).hash(chain_id, escrow)


def salt_binding(receiver_authorizer: str, policy: str, salt_nonce: bytes) -> bytes:
    """The bound ``PaymentInfo.salt``: ``keccak256(abi.encode(SALT_BINDING_TYPEHASH, receiverAuthorizer, policy, saltNonce))``."""
    return keccak(
        SALT_BINDING_TYPEHASH
        + address_word(checked_address("receiver_authorizer", receiver_authorizer))
        + address_word(checked_address("policy", policy))
        + checked_bytes32("salt_nonce", salt_nonce)
    )


def fee_amount(amount: int, fee_bps: int) -> int:
    """``amount * fee_bps / 10000`` rounded down, as the escrow bounds a fee."""
    checked_uint("amount", amount, AMOUNT_MAX)
    checked_uint("fee_bps", fee_bps, FEE_BPS_MAX)
    return amount * fee_bps // FEE_BPS_MAX


# ---------------------------------------------------------------- the payer's signature


def payment_authorization(
    info: PaymentInfo,
    *,
    chain_id: int,
    contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS,
) -> Authorization:
    """The ``ReceiveWithAuthorization`` the ERC-3009 collector redeems for ``info``.

    ``maxAmount`` from the payer to the collector, valid from 0 until
    ``preApprovalExpiry``, with the payment's :meth:`PaymentInfo.signature_nonce`.
    """
    return Authorization(
        from_address=info.payer,
        to=contracts.erc3009_collector,
        value=info.max_amount,
        valid_after=0,
        valid_before=info.pre_approval_expiry,
        nonce=info.signature_nonce(chain_id, contracts.escrow),
    )


def sign_payment_authorization(
    signer: Signer,
    info: PaymentInfo,
    domain: TokenDomain,
    *,
    contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS,
) -> SignedAuthorization:
    """The payer's one signature for ``info``; its ``signature`` is ``authorize``'s ``collectorData``.

    Refuses a signer other than ``info.payer`` and a token domain for another
    token; the signature is recovered before it is returned.
    """
    if domain.verifying_contract != info.token:
        raise AuthorizationError(
            f"the token domain is for {domain.verifying_contract}, the payment is in {info.token}"
        )
    authorization = payment_authorization(info, chain_id=domain.chain_id, contracts=contracts)
    return sign_receive_authorization(signer, authorization, domain)
