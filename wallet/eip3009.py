"""EIP-3009 payment authorizations: build, sign, recover, and the x402 wire form.

A *payment authorization* is the signed EIP-712 message
``TransferWithAuthorization(from, to, value, validAfter, validBefore, nonce)``
that lets anyone submit a token transfer on the payer's behalf, once (the
nonce), inside a time window. ``ReceiveWithAuthorization`` (only ``to`` may
submit it) and ``CancelAuthorization`` are here too, for the contract tests.

Signing reads encode → sign → recover: :func:`sign_authorization` checks the
fresh signature on the fast path (``farthing.wallet.eip712``) before handing it
out, so a signer that returns a high-s or ``v``-0/1 signature, or signs for a
different key, fails here rather than on chain. :func:`recover_authorization_signer`
is the eth-account reference path that the fast path is tested against.

To sign with a key other than ``from`` (a wrong-signer test), call the signer
directly: ``SignedAuthorization(auth, signer.sign_typed_data(*typed_data(auth, domain)), domain)``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature

from farthing.invariant import invariant
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.eip712 import (
    CANCEL_AUTHORIZATION,
    RECEIVE_WITH_AUTHORIZATION,
    TRANSFER_WITH_AUTHORIZATION,
    AuthorizationType,
    cancel_digest,
    recover_digest,
    verify_authorization_signature,
)
from farthing.wallet.erc6492 import SIGNATURE_BYTES_MAX
from farthing.wallet.errors import AmountError, AuthorizationError, SigningError
from farthing.wallet.money import UINT256_MAX, Asset
from farthing.wallet.signer import Signer
from farthing.wallet.smart_account import SmartAccountSigner

__all__ = [
    "AUTHORIZATION_TYPES",
    "CANCEL_AUTHORIZATION",
    "CANCEL_AUTHORIZATION_TYPES",
    "CLOCK_SKEW_S",
    "RECEIVE_WITH_AUTHORIZATION",
    "TRANSFER_WITH_AUTHORIZATION",
    "VALID_FOR_S_DEFAULT",
    "VALID_FOR_S_MAX",
    "Authorization",
    "AuthorizationType",
    "Cancellation",
    "SignedAuthorization",
    "SignedCancellation",
    "TokenDomain",
    "TypedData",
    "build_authorization",
    "cancel_typed_data",
    "recover_authorization_signer",
    "sign_authorization",
    "sign_cancel_authorization",
    "sign_receive_authorization",
    "typed_data",
]

# x402 clients start the window 600 s in the past so that a payer whose clock
# runs ahead of the chain's is not refused as "not yet valid".
CLOCK_SKEW_S: Final = 600
VALID_FOR_S_DEFAULT: Final = 300
# A signed authorization can be settled by whoever holds it until validBefore;
# a week is already generous for a micropayment.
VALID_FOR_S_MAX: Final = 7 * 24 * 3600

NONCE_SIZE: Final = 32
SIGNATURE_SIZE: Final = 65
# Bounds on untrusted wire text, checked before any parsing work.
_NAME_LENGTH_MAX: Final = 256
_DECIMAL_DIGITS_MAX: Final = 78  # len(str(2**256 - 1))
_DECIMAL_RE: Final = re.compile(r"[0-9]{1,78}")
_HEX_RE: Final = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
_SIGNATURE_RE: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


_AUTHORIZATION_FIELDS: Final = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
# The `types` argument for EIP-712 signers. EIP712Domain is left out: eth-account
# and x402's signers derive it from the domain dict.
AUTHORIZATION_TYPES: Final[dict[str, dict[str, list[dict[str, str]]]]] = {
    TRANSFER_WITH_AUTHORIZATION: {TRANSFER_WITH_AUTHORIZATION: _AUTHORIZATION_FIELDS},
    RECEIVE_WITH_AUTHORIZATION: {RECEIVE_WITH_AUTHORIZATION: _AUTHORIZATION_FIELDS},
}
CANCEL_AUTHORIZATION_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    CANCEL_AUTHORIZATION: [
        {"name": "authorizer", "type": "address"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


def _uint256(name: str, value: object) -> int:
    # bool is an int subclass and a float may have lost digits: refuse both.
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuthorizationError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= UINT256_MAX:
        raise AuthorizationError(f"{name} must be between 0 and 2**256 - 1")
    return value


def _nonce(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise AuthorizationError(f"nonce must be bytes, got {type(value).__name__}")
    if len(value) != NONCE_SIZE:
        raise AuthorizationError(f"nonce must be exactly 32 bytes, got {len(value)}")
    return value


@dataclass(frozen=True, slots=True)
class Authorization:
    """The six signed fields of an EIP-3009 transfer, validated on construction.

    Addresses are stored checksummed; ``value`` is atomic units of the token.
    """

    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_address", checksum(self.from_address))
        object.__setattr__(self, "to", checksum(self.to))
        if self.from_address == ZERO_ADDRESS:
            # No key signs for the zero address; a recovery bug returning zero
            # must never match a payer.
            raise AuthorizationError("authorization from must not be the zero address")
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise AmountError(
                f"value must be an int of atomic units, got {type(self.value).__name__}"
            )
        if not 0 <= self.value <= UINT256_MAX:
            raise AmountError("value must be between 0 and 2**256 - 1 atomic units")
        _uint256("valid_after", self.valid_after)
        _uint256("valid_before", self.valid_before)
        _nonce(self.nonce)
        if not self.valid_after < self.valid_before:
            raise AuthorizationError(
                f"valid_after ({self.valid_after}) must be before valid_before "
                f"({self.valid_before})"
            )

    def message(self) -> dict[str, Any]:
        """The EIP-712 message, with the field names the contract uses."""
        return {
            "from": self.from_address,
            "to": self.to,
            "value": self.value,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
            "nonce": self.nonce,
        }

    def to_wire(self) -> dict[str, str]:
        """x402's ``authorization`` object: numbers as decimal strings, nonce as 0x-hex."""
        return {
            "from": self.from_address,
            "to": self.to,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": "0x" + self.nonce.hex(),
        }

    @classmethod
    def from_wire(cls, data: object) -> Authorization:
        """Parse x402's ``authorization`` object; unknown extra keys are ignored
        because the signature covers only these six fields."""
        if not isinstance(data, Mapping):
            raise AuthorizationError("authorization must be a JSON object")
        return cls(
            from_address=_wire_str(data, "from"),
            to=_wire_str(data, "to"),
            value=_wire_decimal(data, "value"),
            valid_after=_wire_decimal(data, "validAfter"),
            valid_before=_wire_decimal(data, "validBefore"),
            nonce=_wire_hex(data, "nonce", NONCE_SIZE),
        )


@dataclass(frozen=True, slots=True)
class TokenDomain:
    """A token's EIP-712 domain: read from the asset, never guessed."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        for field in ("name", "version"):
            text = getattr(self, field)
            if not isinstance(text, str) or len(text) > _NAME_LENGTH_MAX:
                raise AuthorizationError(
                    f"domain {field} must be a string of at most {_NAME_LENGTH_MAX} characters"
                )
        if _uint256("chain_id", self.chain_id) == 0:
            raise AuthorizationError("domain chain_id must be positive")
        object.__setattr__(self, "verifying_contract", checksum(self.verifying_contract))

    @classmethod
    def for_asset(cls, asset: Asset) -> TokenDomain:
        return cls(
            name=asset.name,
            version=asset.version,
            chain_id=asset.chain_id,
            verifying_contract=asset.address,
        )

    def as_eip712(self) -> dict[str, Any]:
        """The domain dict EIP-712 signers take."""
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


class TypedData(NamedTuple):
    """Arguments for ``Signer.sign_typed_data``, in its order: ``signer.sign_typed_data(*td)``."""

    domain: dict[str, Any]
    types: dict[str, list[dict[str, str]]]
    primary_type: str
    message: dict[str, Any]


def _copy_types(types: dict[str, list[dict[str, str]]]) -> dict[str, list[dict[str, str]]]:
    # Signers receive their own copy: one that edits `types` in place (adding
    # EIP712Domain, say) must not change what the next signature covers.
    return {name: [dict(field) for field in fields] for name, fields in types.items()}


def typed_data(
    authorization: Authorization,
    domain: TokenDomain,
    primary_type: AuthorizationType = TRANSFER_WITH_AUTHORIZATION,
) -> TypedData:
    """The EIP-712 typed data of a Transfer- (default) or ReceiveWithAuthorization."""
    if primary_type not in AUTHORIZATION_TYPES:
        raise AuthorizationError(f"not an EIP-3009 authorization type: {primary_type!r}")
    return TypedData(
        domain=domain.as_eip712(),
        types=_copy_types(AUTHORIZATION_TYPES[primary_type]),
        primary_type=primary_type,
        message=authorization.message(),
    )


@dataclass(frozen=True, slots=True)
class SignedAuthorization:
    """An authorization with its signature and the domain it is for.

    The signature is 65 bytes (r ‖ s ‖ v) from a key, or up to
    ``SIGNATURE_BYTES_MAX`` from a contract wallet (ERC-1271, or ERC-6492
    while it is not deployed: ``farthing.wallet.erc6492``). Construction
    checks only the length; whether the signature is valid is a question for
    verify, which answers with a value.
    """

    authorization: Authorization
    signature: bytes
    domain: TokenDomain
    primary_type: AuthorizationType = TRANSFER_WITH_AUTHORIZATION

    def __post_init__(self) -> None:
        if not isinstance(self.authorization, Authorization):
            raise AuthorizationError("authorization must be an Authorization")
        if not isinstance(self.domain, TokenDomain):
            raise AuthorizationError("domain must be a TokenDomain")
        if not isinstance(self.signature, bytes) or not (
            SIGNATURE_SIZE <= len(self.signature) <= SIGNATURE_BYTES_MAX
        ):
            raise AuthorizationError(
                f"signature must be 65 (r, s, v) to {SIGNATURE_BYTES_MAX} bytes (a contract wallet's)"
            )
        if self.primary_type not in AUTHORIZATION_TYPES:
            raise AuthorizationError(f"not an EIP-3009 authorization type: {self.primary_type!r}")

    @property
    def v(self) -> int:
        """Recovery byte, 27 or 28 for a signature the token accepts."""
        return self.signature[64]

    @property
    def r(self) -> bytes:
        """The 32-byte ``r``, as the contract's ``bytes32 r`` argument takes it."""
        return self.signature[:32]

    @property
    def s(self) -> bytes:
        """The 32-byte ``s``, as the contract's ``bytes32 s`` argument takes it."""
        return self.signature[32:64]

    def to_wire(self) -> dict[str, Any]:
        """x402's exact-scheme payload: ``{"authorization": {...}, "signature": "0x..."}``."""
        return {
            "authorization": self.authorization.to_wire(),
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_wire(
        cls,
        payload: object,
        domain: TokenDomain,
        primary_type: AuthorizationType = TRANSFER_WITH_AUTHORIZATION,
    ) -> SignedAuthorization:
        """Parse x402's payload. The domain is not on the wire: it comes from
        the payment requirements (network, asset, ``extra.name``/``version``)."""
        if not isinstance(payload, Mapping):
            raise AuthorizationError("payment payload must be a JSON object")
        if "authorization" not in payload:
            raise AuthorizationError("payment payload has no authorization")
        return cls(
            authorization=Authorization.from_wire(payload["authorization"]),
            signature=_wire_signature(payload),
            domain=domain,
            primary_type=primary_type,
        )


def _wire_str(data: Mapping[Any, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise AuthorizationError(f"authorization.{key} must be a string")
    return value


def _wire_decimal(data: Mapping[Any, Any], key: str) -> int:
    text = _wire_str(data, key)
    if len(text) > _DECIMAL_DIGITS_MAX or not _DECIMAL_RE.fullmatch(text):
        raise AuthorizationError(f"{key} must be a decimal string of at most 78 digits")
    return int(text)


def _wire_signature(data: Mapping[Any, Any]) -> bytes:
    """65 bytes from a key, or a contract wallet's longer signature, bounded before decoding."""
    text = data.get("signature")
    if (
        not isinstance(text, str)
        or not 2 + 2 * SIGNATURE_SIZE <= len(text) <= 2 + 2 * SIGNATURE_BYTES_MAX
        or not _SIGNATURE_RE.fullmatch(text)
    ):
        raise AuthorizationError(
            f"signature must be 0x followed by 65 to {SIGNATURE_BYTES_MAX} bytes of hex"
        )
    return bytes.fromhex(text[2:])


def _wire_hex(data: Mapping[Any, Any], key: str, size: int) -> bytes:
    text = data.get(key)
    if not isinstance(text, str) or len(text) != 2 + 2 * size or not _HEX_RE.match(text):
        raise AuthorizationError(f"{key} must be 0x followed by {2 * size} hex digits")
    return bytes.fromhex(text[2:])


def build_authorization(
    *,
    from_address: str,
    to: str,
    value: int,
    valid_for_s: int = VALID_FOR_S_DEFAULT,
    valid_after: int | None = None,
    now: int | None = None,
    nonce: bytes | None = None,
) -> Authorization:
    """A new authorization valid from ``now - CLOCK_SKEW_S`` until ``now + valid_for_s``.

    The nonce is 32 random bytes from ``secrets`` unless one is given (a caller
    that saves its payment id before signing may derive the nonce from it, so a
    retry signs the same authorization and can never be settled twice).
    """
    if now is None:
        now = int(time.time())
    _uint256("now", now)
    if isinstance(valid_for_s, bool) or not isinstance(valid_for_s, int):
        raise AuthorizationError("valid_for_s must be an int of seconds")
    if not 0 < valid_for_s <= VALID_FOR_S_MAX:
        raise AuthorizationError(f"valid_for_s must be between 1 and {VALID_FOR_S_MAX} seconds")
    if valid_after is None:
        valid_after = max(0, now - CLOCK_SKEW_S)
    return Authorization(
        from_address=from_address,
        to=to,
        value=value,
        valid_after=valid_after,
        valid_before=now + valid_for_s,
        nonce=secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce,
    )


def _sign(
    signer: Signer,
    authorization: Authorization,
    domain: TokenDomain,
    primary_type: AuthorizationType,
) -> SignedAuthorization:
    signer_address = checksum(signer.address)
    if signer_address != authorization.from_address:
        raise AuthorizationError(
            f"authorization is from {authorization.from_address} but the signer is {signer_address}"
        )
    raw = signer.sign_typed_data(*typed_data(authorization, domain, primary_type))
    if isinstance(signer, SmartAccountSigner):
        # A smart account's signature is its owner's, perhaps ERC-6492-wrapped:
        # the owner's must recover to the owner (the account itself answers
        # ERC-1271 on chain, which the facilitator asks).
        signed = SignedAuthorization(authorization, raw, domain, primary_type)
        inner = SignedAuthorization(
            authorization, signer.owner_signature(raw), domain, primary_type
        )
        checked = verify_authorization_signature(inner, signer.owner)
        if not checked.valid:
            raise SigningError(f"fresh signature failed its check: {checked.reason}")
        return signed
    if not isinstance(raw, bytes) or len(raw) != SIGNATURE_SIZE:
        raise SigningError("signer returned something other than a 65-byte signature")
    signed = SignedAuthorization(authorization, raw, domain, primary_type)
    # The other side of the boundary: a fresh signature must be one the token
    # accepts (v 27/28, low s) and must recover to the signer.
    outcome = verify_authorization_signature(signed, signer_address)
    if not outcome.valid:
        raise SigningError(f"fresh signature failed its check: {outcome.reason}")
    # A valid outcome must name the payer; if the fast path ever disagreed with
    # itself, a payment could be attributed to the wrong account.
    invariant(outcome.signer == authorization.from_address, "verified signer is the payer")
    return signed


def sign_authorization(
    signer: Signer, authorization: Authorization, domain: TokenDomain
) -> SignedAuthorization:
    """Sign a TransferWithAuthorization: encode → sign → recover."""
    return _sign(signer, authorization, domain, TRANSFER_WITH_AUTHORIZATION)


def sign_receive_authorization(
    signer: Signer, authorization: Authorization, domain: TokenDomain
) -> SignedAuthorization:
    """Sign a ReceiveWithAuthorization (only ``to`` may submit it on chain)."""
    return _sign(signer, authorization, domain, RECEIVE_WITH_AUTHORIZATION)


def recover_authorization_signer(signed: SignedAuthorization) -> str:
    """The signer's checksummed address via eth-account: the reference path.

    Slower than ``farthing.wallet.eip712.recover_fast`` and checks less (it
    accepts high-s); it is what the fast path is tested against.
    """
    data = typed_data(signed.authorization, signed.domain, signed.primary_type)
    signable = encode_typed_data(data.domain, data.types, data.message)
    try:
        return str(Account.recover_message(signable, signature=signed.signature))
    except (BadSignature, ValueError) as exc:
        raise AuthorizationError(f"signature cannot be recovered: {exc}") from None


@dataclass(frozen=True, slots=True)
class Cancellation:
    """The fields of a CancelAuthorization: the authorizer burns one of its nonces."""

    authorizer: str
    nonce: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "authorizer", checksum(self.authorizer))
        _nonce(self.nonce)


@dataclass(frozen=True, slots=True)
class SignedCancellation:
    """A signed CancelAuthorization, with ``v``/``r``/``s`` for the contract call."""

    cancellation: Cancellation
    signature: bytes
    domain: TokenDomain

    def __post_init__(self) -> None:
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise AuthorizationError("signature must be exactly 65 bytes (r, s, v)")

    @property
    def v(self) -> int:
        return self.signature[64]

    @property
    def r(self) -> bytes:
        return self.signature[:32]

    @property
    def s(self) -> bytes:
        return self.signature[32:64]


def cancel_typed_data(cancellation: Cancellation, domain: TokenDomain) -> TypedData:
    """The EIP-712 typed data of a CancelAuthorization."""
    return TypedData(
        domain=domain.as_eip712(),
        types=_copy_types(CANCEL_AUTHORIZATION_TYPES),
        primary_type=CANCEL_AUTHORIZATION,
        message={"authorizer": cancellation.authorizer, "nonce": cancellation.nonce},
    )


def sign_cancel_authorization(
    signer: Signer, *, nonce: bytes, domain: TokenDomain
) -> SignedCancellation:
    """Sign a CancelAuthorization of ``nonce`` for the signer's own address."""
    cancellation = Cancellation(authorizer=signer.address, nonce=nonce)
    raw = signer.sign_typed_data(*cancel_typed_data(cancellation, domain))
    if not isinstance(raw, bytes) or len(raw) != SIGNATURE_SIZE:
        raise SigningError("signer returned something other than a 65-byte signature")
    recovered = recover_digest(cancel_digest(cancellation.authorizer, nonce, domain), raw)
    if recovered != cancellation.authorizer:
        raise SigningError("fresh cancellation signature does not recover to its signer")
    return SignedCancellation(cancellation, raw, domain)
