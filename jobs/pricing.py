"""A job's price: an int in the worker's currency, converted to USDC at a stored rate.

A price is written for people (``"500 INR"``, ``"40 CNY"``, ``"12.50 USDC"``)
and kept as an int of the currency's minor units (paise, fen, cents) plus the
currency code. It converts into the asset's atomic units at a **rate: units of
the asset per one unit of the currency** (``"0.0119"`` means 1 INR = 0.0119
USDC). The rate is a decimal string, never a float, and is stored with the
job and with every transfer booked for it.

The conversion uses ``Decimal`` with a trap on rounding: a price that does not
convert to a whole number of atomic units is refused, so neither side is
ever paid a fraction the other did not agree to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Final

from farthing.jobs.errors import JobConfigError
from farthing.wallet.money import Asset

__all__ = ["CURRENCY_DECIMALS", "JobPrice", "convert", "parse_price", "parse_rate"]

# ISO 4217 minor units of the currencies workers quote in most; others are
# accepted with two decimals.
CURRENCY_DECIMALS: Final[dict[str, int]] = {
    "CNY": 2,
    "EUR": 2,
    "GBP": 2,
    "INR": 2,
    "JPY": 0,
    "KRW": 0,
    "USD": 2,
    "VND": 0,
}
_PRICE_RE: Final = re.compile(
    r"^\s*(?P<number>\d{1,15}(?:\.\d{1,18})?)\s+(?P<code>[A-Za-z]{3,8})\s*$"
)
_RATE_RE: Final = re.compile(r"^\d{1,12}(?:\.\d{1,18})?$")
_EXACT: Final = Context(prec=80, traps=[InvalidOperation, Inexact])


@dataclass(frozen=True, slots=True)
class JobPrice:
    """A price in the worker's currency: ``amount`` minor units of ``currency``."""

    amount: int
    currency: str
    decimals: int

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise JobConfigError("a job's price must be a positive int of minor units")

    def value(self) -> Decimal:
        """The price in whole units of the currency (``Decimal("500")`` for 500 INR)."""
        return Decimal(self.amount).scaleb(-self.decimals, context=_EXACT)

    def __str__(self) -> str:
        return f"{format(self.value(), 'f')} {self.currency}"


def _decimals(currency: str, asset: Asset) -> int:
    if currency == asset.symbol.upper():
        return asset.decimals
    return CURRENCY_DECIMALS.get(currency, 2)


def parse_price(text: str, asset: Asset) -> JobPrice:
    """``"500 INR"`` → ``JobPrice(50000, "INR", 2)``; more decimals than the currency has is refused."""
    match = _PRICE_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise JobConfigError(
            f"cannot read the price {text!r} (write e.g. '500 INR' or '12.5 USDC')"
        )
    currency = match["code"].upper()
    decimals = _decimals(currency, asset)
    value = Decimal(match["number"])
    scaled = value.scaleb(decimals, context=_EXACT)
    if scaled != scaled.to_integral_value():
        raise JobConfigError(f"{text.strip()} has more decimals than {currency} has ({decimals})")
    if scaled <= 0:
        raise JobConfigError(f"the price {text.strip()!r} must be more than zero")
    return JobPrice(int(scaled), currency, decimals)


def parse_rate(text: str | Decimal) -> Decimal:
    """A rate as given: a positive decimal string (or ``Decimal``); floats are refused."""
    if isinstance(text, Decimal):
        if not text.is_finite() or text <= 0:
            raise JobConfigError(f"a rate must be a positive decimal number, got {text}")
        return text
    if not isinstance(text, str) or not _RATE_RE.match(text.strip()):
        raise JobConfigError(f"a rate must be decimal text such as '0.0119', got {text!r}")
    value = Decimal(text.strip())
    if value <= 0:
        raise JobConfigError("a rate must be more than zero")
    return value


def convert(price: JobPrice, asset: Asset, rate: Decimal | None) -> int:
    """The price in ``asset``'s atomic units, exactly; ``rate`` is asset units per currency unit.

    A price already in the asset needs no rate (and refuses one other than 1).
    """
    if price.currency == asset.symbol.upper():
        if rate is not None and rate != 1:
            raise JobConfigError(f"a price in {asset.symbol} takes no exchange rate")
        rate = Decimal(1)
    if rate is None:
        raise JobConfigError(
            f"a price in {price.currency} needs a rate: how many {asset.symbol} one {price.currency} is"
        )
    with localcontext(_EXACT):
        try:
            scaled = (price.value() * rate).scaleb(asset.decimals)
        except Inexact:
            scaled = None
    if scaled is None or scaled != scaled.to_integral_value():
        raise JobConfigError(
            f"{price} at {rate} {asset.symbol}/{price.currency} is not a whole number of "
            f"{asset.symbol} atomic units; choose a rate that converts exactly"
        )
    atomic = int(scaled)
    if atomic <= 0:
        raise JobConfigError(
            f"{price} converts to nothing at {rate} {asset.symbol}/{price.currency}"
        )
    if atomic > 2**63 - 1:
        raise JobConfigError(f"{price} is too large for the books")
    return atomic
