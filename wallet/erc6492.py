"""ERC-6492: the signature of a contract wallet that is not deployed yet.

A counterfactual wallet (its address known from a CREATE2 factory before any
code is there) cannot answer ERC-1271, so its signature travels wrapped:
``abi.encode(address factory, bytes factoryCalldata, bytes signature)``
followed by the 32-byte magic suffix ``0x6492…6492``. A verifier runs the
factory call (in a simulation), then asks the new wallet's
``isValidSignature`` about the inner signature; whoever settles runs the
factory call for real first.

Reading a wrapper never raises on what the network sent: :func:`unwrap`
answers ``None`` for a signature that is not wrapped, a snake_case reason for
one that is wrapped badly (too long, not canonical ABI, a zero factory or an
empty call), and :class:`Wrapped` otherwise. Every signature is bounded by
:data:`SIGNATURE_BYTES_MAX` before anything decodes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError

from farthing.wallet.address import checksum, is_address
from farthing.wallet.errors import AuthorizationError

__all__ = ["MAGIC_SUFFIX", "SIGNATURE_BYTES_MAX", "Wrapped", "unwrap", "wrap"]

MAGIC_SUFFIX: Final = bytes.fromhex("6492" * 16)
# The longest signature any scheme reads, wrapped or not: a WebAuthn
# passkey signature in a 6492 wrapper is well under 2 KB, and a payment header
# is bounded at 8 KB of base64 anyway.
SIGNATURE_BYTES_MAX: Final = 4096
_WRAPPER_TYPES: Final = ["address", "bytes", "bytes"]


@dataclass(frozen=True, slots=True)
class Wrapped:
    """A wrapped signature's parts: the factory, the call that deploys the wallet, the inner signature."""

    factory: str
    factory_calldata: bytes
    signature: bytes


def wrap(factory: str, factory_calldata: bytes, signature: bytes) -> bytes:
    """The ERC-6492 form of ``signature`` for a wallet ``factory_calldata`` deploys."""
    if not is_address(factory) or int(factory, 16) == 0:
        raise AuthorizationError(f"an ERC-6492 factory must be a non-zero address: {factory!r}")
    if not factory_calldata or not signature:
        raise AuthorizationError("an ERC-6492 wrapper needs a factory call and a signature")
    wrapped = abi_encode(_WRAPPER_TYPES, [checksum(factory), factory_calldata, signature])
    out = wrapped + MAGIC_SUFFIX
    if len(out) > SIGNATURE_BYTES_MAX:
        raise AuthorizationError(f"the wrapped signature is over {SIGNATURE_BYTES_MAX} bytes")
    return out


def unwrap(signature: bytes) -> Wrapped | str | None:
    """The wrapper's parts, a snake_case reason it is malformed, or ``None`` if not wrapped."""
    if len(signature) > SIGNATURE_BYTES_MAX:
        return "signature_too_large"
    if len(signature) < len(MAGIC_SUFFIX) or signature[-32:] != MAGIC_SUFFIX:
        return None
    body = signature[:-32]
    try:
        factory, calldata, inner = abi_decode(_WRAPPER_TYPES, body, strict=True)
    except (DecodingError, ValueError, OverflowError):
        return "invalid_erc6492_signature"
    # One signature, one encoding: padding or offsets that re-encode differently
    # would let the same wrapper be replayed under another byte string.
    if abi_encode(_WRAPPER_TYPES, [factory, calldata, inner]) != body:
        return "invalid_erc6492_signature"
    if int(factory, 16) == 0 or not calldata or not inner:
        return "invalid_erc6492_signature"
    return Wrapped(checksum(factory), bytes(calldata), bytes(inner))
