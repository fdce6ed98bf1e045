"""Reading the fields of a scheme's x402 JSON strictly: the helpers every scheme's wire parses with.

A scheme's payloads, requirements ``extra`` and response ``extra`` are
camelCase JSON from a client or a server. These helpers read one field each
and raise :class:`Malformed` on anything else; a scheme's parse entry point
catches it and answers a :class:`WireRefusal` with the spec's code, so
nothing a client sends makes a parse raise. The rules are the same in every
scheme:

- amounts are decimal strings of atomic units (``"1000"``), never JSON
  numbers, which may have passed through a float on the way;
- counts, delays and expiries are JSON integers, never booleans;
- addresses come back checksummed, ``bytes32`` and signatures as ``bytes``
  (a signature at most :data:`SIGNATURE_BYTES_MAX` bytes);
- a detail names the field, never echoes the input.

``reason`` is the spec's code for a field whose refusal has a code of its
own; a scheme that names the code at its entry point leaves it empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from farthing.wallet.address import checksum, is_address

__all__ = [
    "AMOUNT_DIGITS_MAX",
    "SIGNATURE_BYTES_MAX",
    "Malformed",
    "WireRefusal",
    "address",
    "amount",
    "bytes32",
    "integer",
    "need",
    "object_of",
    "refusing",
    "signature",
    "to_hex",
]

# ERC-1271 wallets may sign with more than 65 bytes; this bounds what we hold.
SIGNATURE_BYTES_MAX: Final = 4096
AMOUNT_DIGITS_MAX: Final = 78  # a uint256 has 78 decimal digits

_AMOUNT_RE: Final = re.compile(r"0|[1-9][0-9]*")
_BYTES32_RE: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX_RE: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+")

_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True, slots=True)
class WireRefusal:
    """Why a wire object was refused: the spec's code and a detail safe to log."""

    reason: str
    detail: str


class Malformed(Exception):
    """A field that is not what the spec says; a parse entry point makes it a WireRefusal."""

    def __init__(self, detail: str, reason: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def refusing(parse: Callable[[object], _Parsed], data: object) -> _Parsed | WireRefusal:
    """``parse(data)``, or the refusal its :class:`Malformed` carries (for a scheme whose fields name their codes)."""
    try:
        return parse(data)
    except Malformed as exc:
        return WireRefusal(exc.reason, exc.detail)


def need(data: Mapping[str, Any], name: str, where: str, reason: str = "") -> Any:
    """``data[name]``, which must be present."""
    if name not in data:
        raise Malformed(f"{where} has no {name}", reason)
    return data[name]


def object_of(value: object, where: str, reason: str = "") -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise Malformed(f"{where} must be an object", reason)
    return value


def amount(
    value: object,
    where: str,
    maximum: int,
    reason: str = "",
    *,
    digits_max: int = AMOUNT_DIGITS_MAX,
) -> int:
    """A decimal string of at most ``digits_max`` digits, no leading zero, at most ``maximum``."""
    if not isinstance(value, str) or len(value) > digits_max or not _AMOUNT_RE.fullmatch(value):
        raise Malformed(f"{where} must be a decimal string of atomic units", reason)
    number = int(value)
    if number > maximum:
        raise Malformed(f"{where} is out of range", reason)
    return number


def integer(value: object, where: str, maximum: int, reason: str = "") -> int:
    """A JSON integer from 0 to ``maximum`` (a boolean is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise Malformed(f"{where} must be an integer from 0 to {maximum}", reason)
    return value


def address(value: object, where: str, reason: str = "") -> str:
    """A 20-byte hex address, checksummed."""
    if not isinstance(value, str) or not is_address(value):
        raise Malformed(f"{where} must be a 20-byte hex address", reason)
    return str(checksum(value))


def bytes32(value: object, where: str, reason: str = "") -> bytes:
    """``0x`` and 64 hex digits, as 32 bytes."""
    if not isinstance(value, str) or not _BYTES32_RE.fullmatch(value):
        raise Malformed(f"{where} must be 0x and 64 hex digits", reason)
    return bytes.fromhex(value[2:])


def signature(value: object, where: str, reason: str = "") -> bytes:
    """``0x``-prefixed hex bytes, at most :data:`SIGNATURE_BYTES_MAX` of them."""
    if (
        not isinstance(value, str)
        or len(value) > 2 + 2 * SIGNATURE_BYTES_MAX
        or not _HEX_RE.fullmatch(value)
    ):
        raise Malformed(f"{where} must be 0x-prefixed hex bytes", reason)
    return bytes.fromhex(value[2:])


def to_hex(data: bytes) -> str:
    """``0x`` and the bytes' hex, as the wire writes bytes."""
    return "0x" + data.hex()
