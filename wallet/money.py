"""Money is an ``int`` of atomic units plus an :class:`Asset`; never a float.

Human amounts (``"0.10"``) are parsed here, at the edge, with ``Decimal`` and
refused unless they convert to whole atomic units exactly. On the wire an
amount is a decimal string of atomic units (``"100000"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded, localcontext

from farthing.wallet.errors import AmountError

__all__ = [
    "UINT256_MAX",
    "Asset",
    "Money",
    "format_amount",
    "format_decimal",
    "parse_amount",
    "parse_atomic",
]

UINT256_MAX = 2**256 - 1

# Plain decimal notation only: no exponents, no signs, no thousands separators,
# so "1e3" or "1,000" cannot be mistaken for an amount.
_DECIMAL_RE = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
# Enough digits for any uint256 amount at any scale we accept, and a trap on
# rounding, so that no amount is ever silently truncated by the default
# 28-digit context.
_EXACT = Context(prec=200, traps=[InvalidOperation, Inexact, Rounded])


@dataclass(frozen=True, slots=True)
class Asset:
    """A token on one network, with what EIP-712 signing needs to know about it.

    ``name`` and ``version`` are the token's EIP-712 domain fields. They differ
    between deployments (USDC is "USD Coin" on Base and "USDC" on Base
    Sepolia), so they are read from the asset and never guessed.
    """

    network: str  # CAIP-2, e.g. "eip155:8453"
    address: str  # checksummed token contract address
    decimals: int
    name: str
    version: str
    symbol: str = "USDC"

    def __post_init__(self) -> None:
        if not self.network.startswith("eip155:"):
            raise AmountError(f"asset network must be a CAIP-2 eip155 id, got {self.network!r}")
        if not 0 <= self.decimals <= 36:
            raise AmountError(f"asset decimals out of range: {self.decimals}")

    @property
    def chain_id(self) -> int:
        return int(self.network.split(":", 1)[1])

    def parse(self, text: str) -> int:
        """Parse a human amount such as ``"0.25"`` into atomic units of this asset."""
        return parse_amount(text, self.decimals)

    def format(self, atomic: int) -> str:
        """Format atomic units as a human amount with the symbol, e.g. ``"0.25 USDC"``."""
        return f"{format_amount(atomic, self.decimals)} {self.symbol}"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one asset, in atomic units."""

    atomic: int
    asset: Asset

    def __post_init__(self) -> None:
        if isinstance(self.atomic, bool) or not isinstance(self.atomic, int):
            raise AmountError(
                f"money must be an int of atomic units, got {type(self.atomic).__name__}"
            )
        if not 0 <= self.atomic <= UINT256_MAX:
            raise AmountError("money must be between 0 and 2**256 - 1 atomic units")

    def __str__(self) -> str:
        return self.asset.format(self.atomic)


def parse_amount(text: str, decimals: int) -> int:
    """Convert a human decimal amount to atomic units, exactly or not at all.

    >>> parse_amount("0.1", 6)
    100000
    >>> parse_amount("1.0000001", 6)
    Traceback (most recent call last):
    ...
    farthing.wallet.errors.AmountError: 1.0000001 has more than 6 decimal places
    """
    if not isinstance(text, str):
        raise AmountError(f"an amount must be given as text, got {type(text).__name__}")
    cleaned = text.strip()
    if cleaned.startswith("-"):
        raise AmountError(f"amount must not be negative: {cleaned}")
    if not _DECIMAL_RE.match(cleaned):
        raise AmountError(f"not a decimal amount: {text!r}")
    if len(cleaned) > 120:
        raise AmountError("amount too large")
    with localcontext(_EXACT):
        try:
            scaled = Decimal(cleaned).scaleb(decimals)
        except (InvalidOperation, Inexact, Rounded) as exc:
            raise AmountError(f"not a decimal amount: {text!r}") from exc
        if scaled != scaled.to_integral_value():
            raise AmountError(f"{cleaned} has more than {decimals} decimal places")
        atomic = int(scaled)
    if atomic > UINT256_MAX:
        raise AmountError(f"amount too large: {cleaned}")
    return atomic


def parse_atomic(text: str | int) -> int:
    """Parse a wire amount: a decimal string of atomic units such as ``"100000"``."""
    if isinstance(text, bool):
        raise AmountError("an atomic amount must be a decimal string, got a bool")
    if isinstance(text, int):
        atomic = text
    elif isinstance(text, str) and text.isascii() and text.isdigit():
        atomic = int(text)
    else:
        raise AmountError(f"an atomic amount must be a string of digits, got {text!r}")
    if not 0 <= atomic <= UINT256_MAX:
        raise AmountError(f"atomic amount out of range: {text!r}")
    return atomic


def format_decimal(value: Decimal, places_max: int) -> str:
    """A ``Decimal`` amount (a fiat figure at a stored rate) in the same form as
    :func:`format_amount`: rounded half-even to ``places_max`` places, trailing
    zeros trimmed, never an exponent.

    >>> format_decimal(Decimal("0.10000"), 4)
    '0.1'
    >>> format_decimal(Decimal("7.2202166"), 4)
    '7.2202'
    """
    text = format(value.quantize(Decimal(1).scaleb(-places_max)), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def format_amount(atomic: int, decimals: int) -> str:
    """Format atomic units as a plain decimal string, trimming trailing zeros.

    >>> format_amount(100000, 6)
    '0.1'
    >>> format_amount(5_000_000, 6)
    '5'
    """
    if isinstance(atomic, bool) or not isinstance(atomic, int):
        raise AmountError(f"atomic amount must be an int, got {type(atomic).__name__}")
    sign = "-" if atomic < 0 else ""
    whole, frac = divmod(abs(atomic), 10**decimals)
    if decimals == 0 or frac == 0:
        return f"{sign}{whole}"
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{sign}{whole}.{digits}"
