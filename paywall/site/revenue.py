"""The blogger's revenue report: per article, per day and in total, in USDC and in fiat.

Read from the paywall's own payment records (settled payments only): the
amount in atomic units, and, for a fiat-priced article, the currency and the
rate stored with that payment, so the fiat figure is what the reader was
quoted, not today's rate. Sums are exact (``int`` atomic units, ``Decimal``
fiat); the day is the UTC day the payment was settled.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from farthing.paywall.records.payments import PAYMENTS, PaymentState
from farthing.paywall.records.store import PaymentStore
from farthing.wallet.money import format_amount, format_decimal

__all__ = ["RevenueLine", "RevenueReport", "revenue_report"]


@dataclass(slots=True)
class RevenueLine:
    """One row: an article, a day, or the total."""

    key: str
    payments: int = 0
    amount: int = 0  # atomic units of the asset
    fiat: dict[str, Decimal] = field(default_factory=dict)

    def add(self, amount: int, currency: str | None, rate: Decimal | None, decimals: int) -> None:
        self.payments += 1
        self.amount += amount
        if currency and rate:
            self.fiat[currency] = self.fiat.get(currency, Decimal(0)) + _fiat(
                amount, rate, decimals
            )

    def to_json(self, decimals: int) -> dict[str, Any]:
        return {
            "key": self.key,
            "payments": self.payments,
            "amount": str(self.amount),
            "usdc": _units(self.amount, decimals),
            "fiat": {k: _money(v) for k, v in sorted(self.fiat.items())},
        }


@dataclass(slots=True)
class RevenueReport:
    decimals: int
    articles: list[RevenueLine]
    days: list[RevenueLine]
    total: RevenueLine

    def to_json(self) -> dict[str, Any]:
        return {
            "articles": [line.to_json(self.decimals) for line in self.articles],
            "days": [line.to_json(self.decimals) for line in self.days],
            "total": self.total.to_json(self.decimals),
        }

    def to_csv(self) -> str:
        currencies = sorted({c for line in self._lines() for c in line.fiat})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["kind", "key", "payments", "usdc", *currencies])
        for kind, lines in (
            ("article", self.articles),
            ("day", self.days),
            ("total", [self.total]),
        ):
            for line in lines:
                row = line.to_json(self.decimals)
                fiat = [row["fiat"].get(c, "0") for c in currencies]
                writer.writerow([kind, line.key, line.payments, row["usdc"], *fiat])
        return out.getvalue()

    def _lines(self) -> Iterable[RevenueLine]:
        return [*self.articles, *self.days, self.total]


def _fiat(amount: int, rate: Decimal, decimals: int) -> Decimal:
    # The rate is in asset units (USDC) per one unit of the currency:
    # fiat = (amount / 10**decimals) / rate, kept exact until display.
    return Decimal(amount).scaleb(-decimals) / rate


def _units(amount: int, decimals: int) -> str:
    return format_amount(amount, decimals)


def _money(value: Decimal) -> str:
    # A fiat figure at the stored rate: four places, as a blogger reads a price.
    return format_decimal(value, 4)


def revenue_report(store: PaymentStore, *, decimals: int = 6) -> RevenueReport:
    """Settled revenue from ``store``, per article (path), per UTC day and in total."""
    columns = PAYMENTS.c
    query = select(
        columns.resource, columns.amount, columns.fiat_currency, columns.fiat_rate,
        columns.updated_at_ns,
    ).where(columns.state == PaymentState.SETTLED.value)  # fmt: skip
    articles: dict[str, RevenueLine] = {}
    days: dict[str, RevenueLine] = {}
    total = RevenueLine("total")
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    for resource, amount_text, currency, rate_text, updated_ns in rows:
        amount = int(amount_text)
        rate = Decimal(rate_text) if rate_text else None
        path = urlsplit(resource).path or "/"
        day = datetime.fromtimestamp(updated_ns // 10**9, UTC).date().isoformat()
        for table, key in ((articles, path), (days, day)):
            table.setdefault(key, RevenueLine(key)).add(amount, currency, rate, decimals)
        total.add(amount, currency, rate, decimals)
    return RevenueReport(
        decimals=decimals,
        articles=sorted(articles.values(), key=lambda line: (-line.amount, line.key)),
        days=sorted(days.values(), key=lambda line: line.key),
        total=total,
    )
