"""Ethereum addresses: validated once at the edge, then always checksummed."""

from __future__ import annotations

import re
from functools import lru_cache

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from farthing.wallet.errors import AddressError

__all__ = ["ZERO_ADDRESS", "checksum", "is_address"]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

_HEX_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


def is_address(text: object) -> bool:
    """True if ``text`` is a 0x-prefixed 20-byte hex string (any case)."""
    return isinstance(text, str) and bool(_HEX_ADDRESS_RE.match(text))


def checksum(text: str) -> ChecksumAddress:
    """Return the EIP-55 checksummed form of ``text`` or raise ``AddressError``.

    Mixed-case input must already carry a valid checksum: a typo in a
    checksummed address is caught rather than silently accepted.
    """
    if not isinstance(text, str):
        raise AddressError(f"not an address (want 0x followed by 40 hex digits): {text!r}")
    return _checksum(text)


# Pure and hot: the channel voucher path checksums the same few addresses
# dozens of times a request, and each costs a keccak (about 50 us). A refusal
# raises, and lru_cache keeps only answers, so only valid addresses stay.
@lru_cache(maxsize=4096)
def _checksum(text: str) -> ChecksumAddress:
    if not _HEX_ADDRESS_RE.match(text):
        raise AddressError(f"not an address (want 0x followed by 40 hex digits): {text!r}")
    normalized = to_checksum_address(text)
    has_upper = any(c.isupper() for c in text[2:])
    has_lower = any(c.islower() for c in text[2:])
    if has_upper and has_lower and normalized != text:
        raise AddressError(f"address has a bad EIP-55 checksum: {text}")
    return normalized
