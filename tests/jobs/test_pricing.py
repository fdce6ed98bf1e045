"""A job's price converts from the worker's currency to USDC atomic units exactly, at a stored rate, or is refused.

Pure unit tests: Decimal arithmetic with a trap on rounding, ISO minor units
per currency, floats and malformed text refused with one clear message.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from farthing.jobs import JobConfigError, JobPrice, convert, parse_price, parse_rate
from farthing.wallet.money import Asset

USDC = Asset("eip155:31337", "0x" + "11" * 20, 6, "USD Coin", "2", "USDC")


@pytest.mark.parametrize(
    ("text", "rate", "atomic"),
    [
        ("500 INR", "0.0119", 5_950_000),
        ("40 CNY", "0.1385", 5_540_000),
        ("1000 JPY", "0.0067", 6_700_000),
        ("12.5 usdc", None, 12_500_000),
        ("0.000001 USDC", None, 1),
        ("19.99 EUR", "1.08", 21_589_200),
    ],
)
def test_prices_convert_exactly(text: str, rate: str | None, atomic: int) -> None:
    price = parse_price(text, USDC)
    assert convert(price, USDC, None if rate is None else parse_rate(rate)) == atomic


def test_minor_units_are_kept_as_ints() -> None:
    assert parse_price("500 INR", USDC) == JobPrice(50_000, "INR", 2)
    assert parse_price("1000 JPY", USDC) == JobPrice(1_000, "JPY", 0)
    assert str(parse_price("40.5 CNY", USDC)) == "40.50 CNY"


@pytest.mark.parametrize(
    ("text", "rate", "message"),
    [
        ("500.001 INR", "0.01", "more decimals than INR"),
        ("1.5 JPY", "0.0067", "more decimals than JPY"),
        ("1 INR", "0.0000001", "not a whole number"),
        ("1 INR", None, "needs a rate"),
        ("1 USDC", "2", "takes no exchange rate"),
        ("0 INR", "1", "more than zero"),
        ("-1 INR", "1", "cannot read the price"),
        ("1e3 INR", "1", "cannot read the price"),
        ("ten INR", "1", "cannot read the price"),
    ],
)
def test_bad_prices_are_refused(text: str, rate: str | None, message: str) -> None:
    with pytest.raises(JobConfigError, match=message):
        convert(parse_price(text, USDC), USDC, None if rate is None else parse_rate(rate))


@pytest.mark.parametrize("rate", ["0", "-1", "1e-3", "abc", "", "NaN"])
def test_bad_rates_are_refused(rate: str) -> None:
    with pytest.raises(JobConfigError):
        parse_rate(rate)


def test_a_float_rate_is_refused() -> None:
    with pytest.raises(JobConfigError):
        parse_rate(0.0119)  # type: ignore[arg-type]
    assert parse_rate(Decimal("0.0119")) == Decimal("0.0119")
