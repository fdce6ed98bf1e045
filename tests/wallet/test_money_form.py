"""Every report writes money in one form: trailing zeros trimmed, no exponent.

Known answers for the atomic formatter every report shares, and for the
Decimal formatter that fiat figures at a stored rate go through (the revenue
report wrote "0.013850 USDC / 0.1000 CNY" where the rest wrote "0.01385 USDC
/ 0.1 CNY").
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from farthing.ledger.report import format_amount as ledger_format
from farthing.paywall.site.revenue import RevenueLine
from farthing.wallet.money import format_amount, format_decimal


@pytest.mark.parametrize(
    "atomic,text",
    [(13_850, "0.01385"), (100_000, "0.1"), (5_000_000, "5"), (0, "0"), (-1, "-0.000001")],
)
def test_atomic_amounts(atomic: int, text: str) -> None:
    assert format_amount(atomic, 6) == text
    assert ledger_format(atomic, 6) == text


@pytest.mark.parametrize(
    "value,text",
    [
        (Decimal("0.1000"), "0.1"),
        (Decimal("0.013850") / Decimal("0.1385"), "0.1"),
        (Decimal("1E+1"), "10"),
        (Decimal("7.22021660"), "7.2202"),
        (Decimal("0.00001"), "0"),
    ],
)
def test_decimal_amounts(value: Decimal, text: str) -> None:
    assert format_decimal(value, 4) == text


def test_the_revenue_report_writes_the_same_form() -> None:
    line = RevenueLine("total")
    line.add(13_850, "CNY", Decimal("0.1385"), 6)
    assert line.to_json(6) == {
        "key": "total",
        "payments": 1,
        "amount": "13850",
        "usdc": "0.01385",
        "fiat": {"CNY": "0.1"},
    }
