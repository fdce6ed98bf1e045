"""Prices: human text in, exact atomic units out, with the fiat rate kept.

A price is written in the stablecoin (``"0.01 USDC"``, or a bare ``"0.01"``),
in US dollars (``"$0.01"``), or in another fiat currency (``"0.1 CNY"``). It is
parsed with ``Decimal`` and must convert to a whole, positive number of the
asset's atomic units.

Fiat prices convert at a configured **rate: units of the asset per one unit of
the currency** (``{"CNY": Decimal("0.1385")}`` means 1 CNY = 0.1385 USDC). The
rate is a ``Decimal`` or a decimal string, never a float, and is stored with
every payment made at it.

Rounding policy. By default (``rounding="exact"``) a fiat price whose
conversion is not a whole number of atomic units is refused when the paywall
is configured, so the merchant learns at start-up, not from a customer.
``rounding="up"`` is the explicit opt-in: the amount is rounded *up* to the
next atomic unit (at most 0.000001 USDC more than the exact conversion), so a
merchant never undercharges and a payer overpays by less than one unit.
US dollars convert 1:1 into a USD-pegged asset (symbol starting ``USD``)
unless a ``USD`` rate is configured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Final, Literal

from farthing.paywall.errors import PriceError
from farthing.wallet.money import UINT256_MAX, Asset

__all__ = [
    "Quote",
    "Rounding",
    "check_rate",
    "parse_price",
    "quote_atomic",
]

Rounding = Literal["exact", "up"]

_PRICE_RE: Final = re.compile(
    r"^\s*(?:(?P<dollar>\$)\s*(?P<usd>\d+(?:\.\d+)?)"
    r"|(?P<number>\d+(?:\.\d+)?)(?:\s+(?P<unit>[A-Za-z][A-Za-z0-9.]{0,15}))?)\s*$"
)
_PRICE_TEXT_MAX: Final = 64
# Exact arithmetic: enough digits for any uint256 at 36 decimals, and a trap
# on rounding so no conversion is ever silently truncated.
_EXACT: Final = Context(prec=200, traps=[InvalidOperation, Inexact])


@dataclass(frozen=True, slots=True)
class Quote:
    """A price resolved to atomic units of one asset, with the fiat terms behind it."""

    amount: int
    asset: Asset
    fiat_currency: str | None = None
    fiat_amount: Decimal | None = None
    fiat_rate: Decimal | None = None  # asset units per one unit of fiat_currency

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise PriceError("a quote's amount must be an int of atomic units")
        if not 0 < self.amount <= UINT256_MAX:
            raise PriceError("a price must be positive")

    def describe(self) -> str:
        """The price for people, e.g. ``"0.1 CNY (0.01385 USDC at 0.1385 USDC/CNY)"``."""
        in_asset = self.asset.format(self.amount)
        if self.fiat_currency is None or self.fiat_rate is None:
            return in_asset
        return (
            f"{self.fiat_amount} {self.fiat_currency} ({in_asset} at "
            f"{self.fiat_rate} {self.asset.symbol}/{self.fiat_currency})"
        )


def check_rate(currency: str, rate: object) -> Decimal:
    """A validated fiat rate: a positive, finite ``Decimal`` (floats are refused)."""
    if isinstance(rate, (float, bool)):
        raise PriceError(f"the {currency} rate must be a Decimal or a decimal string, not a float")
    try:
        value = Decimal(rate) if isinstance(rate, (str, int)) else rate
    except InvalidOperation:
        raise PriceError(f"the {currency} rate is not a decimal number: {rate!r}") from None
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise PriceError(f"the {currency} rate must be a positive decimal number, got {rate!r}")
    return value


def quote_atomic(amount: int, asset: Asset) -> Quote:
    """A price given directly in atomic units (a dynamic price may return one)."""
    return Quote(amount, asset)


def parse_price(
    price: str,
    asset: Asset,
    *,
    rates: Mapping[str, Decimal] | None = None,
    rounding: Rounding = "exact",
) -> Quote:
    """Resolve a human price to a :class:`Quote` in ``asset``'s atomic units.

    >>> from farthing.wallet.money import Asset
    >>> usdc = Asset("eip155:31337", "0x" + "11" * 20, 6, "USD Coin", "2", "USDC")
    >>> parse_price("0.01 USDC", usdc).amount
    10000
    >>> q = parse_price("0.1 CNY", usdc, rates={"CNY": Decimal("0.1385")})
    >>> (q.amount, str(q.fiat_rate))
    (13850, '0.1385')
    """
    if not isinstance(price, str) or len(price) > _PRICE_TEXT_MAX:
        raise PriceError(f"a price must be text such as '0.01 USDC', got {price!r}")
    match = _PRICE_RE.match(price)
    if match is None:
        raise PriceError(
            f"cannot read the price {price!r} (write '0.01 USDC', '$0.01' or '0.1 CNY')"
        )
    if rounding not in ("exact", "up"):
        raise PriceError(f"rounding must be 'exact' or 'up', got {rounding!r}")
    if match["dollar"]:
        currency, number = "USD", match["usd"]
    else:
        currency, number = (match["unit"] or asset.symbol).upper(), match["number"]
    value = Decimal(number)
    if currency == asset.symbol.upper():
        return Quote(_to_atomic(value, asset, "exact", price), asset)
    rate = _rate_for(currency, asset, rates or {})
    with localcontext(_EXACT):
        in_asset = value * rate
    atomic = _to_atomic(in_asset, asset, rounding, price, rate=rate, currency=currency)
    return Quote(atomic, asset, currency, value, rate)


def _rate_for(currency: str, asset: Asset, rates: Mapping[str, Decimal]) -> Decimal:
    for key, rate in rates.items():
        if key.upper() == currency:
            return check_rate(currency, rate)
    if currency == "USD" and asset.symbol.upper().startswith("USD"):
        return Decimal(1)  # a USD-pegged stablecoin, unless a USD rate says otherwise
    raise PriceError(
        f"no exchange rate for {currency}: configure how many {asset.symbol} one {currency} is"
    )


def _to_atomic(
    value: Decimal,
    asset: Asset,
    rounding: Rounding,
    price: str,
    *,
    rate: Decimal | None = None,
    currency: str | None = None,
) -> int:
    scaled = value.scaleb(asset.decimals, context=_EXACT)
    whole = scaled.to_integral_value(rounding=ROUND_CEILING)
    if scaled != whole and rounding != "up":
        where = f" at {rate} {asset.symbol}/{currency}" if rate is not None else ""
        raise PriceError(
            f"{price.strip()}{where} is {format(value.normalize(), 'f')} {asset.symbol}, "
            f"which is not a whole number of atomic units ({asset.decimals} decimals); "
            "choose a price or rate that converts exactly, or set rounding='up'"
        )
    atomic = int(whole)
    if atomic <= 0:
        raise PriceError(f"the price {price.strip()!r} must be more than zero")
    if atomic > UINT256_MAX:
        raise PriceError(f"the price {price.strip()!r} is too large")
    return atomic
