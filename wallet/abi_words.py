"""The 32-byte words EIP-712 struct hashes are made of, and the checks on what goes in them.

Shared by the escrow bindings (:mod:`farthing.paywall.schemes.batch_settlement.vouchers`,
:mod:`farthing.paywall.schemes.auth_capture.contract`), which hash their structs by hand: the
same bytes the contracts hash, without a generic encoder's cost. A value that
does not fit its word is refused with ``AuthorizationError``, naming it.
"""

from __future__ import annotations

import re
from typing import Final

from farthing.wallet.address import checksum, is_address
from farthing.wallet.eip712 import keccak256
from farthing.wallet.errors import AuthorizationError

__all__ = ["address_word", "checked_address", "checked_bytes32", "checked_uint", "keccak", "word"]

_BYTES32_RE: Final = re.compile(r"0x[0-9a-fA-F]{64}")


def keccak(data: bytes) -> bytes:
    return bytes(keccak256(data))


def word(value: int) -> bytes:
    """A uint as its big-endian 32-byte word (the caller checked its range)."""
    return value.to_bytes(32, "big")


def address_word(address: str) -> bytes:
    """A checked address (0x + 40 hex digits) left-padded to 32 bytes."""
    return bytes(12) + bytes.fromhex(address[2:])


def checked_uint(name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise AuthorizationError(f"{name} must be an int between 0 and {maximum}")
    return value


def checked_address(name: str, value: object) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise AuthorizationError(f"{name} must be a 20-byte hex address")
    return str(checksum(value))


def checked_bytes32(name: str, value: object) -> bytes:
    if isinstance(value, str) and _BYTES32_RE.fullmatch(value):
        return bytes.fromhex(value[2:])
    if isinstance(value, bytes) and len(value) == 32:
        return value
    raise AuthorizationError(f"{name} must be 32 bytes (0x and 64 hex digits)")
