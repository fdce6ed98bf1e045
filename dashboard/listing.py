"""``Listing``: one table as a page shows it and as CSV or JSON downloads it.

Every table on every page is built once as a ``Listing``, so the download is
exactly what the page shows (same rows, same order). Values are strings;
amounts are written both ways, atomic units (``*_atomic``, an integer as a
decimal string, as on the wire) and for people, never as floats.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from farthing.ledger.report import format_amount

__all__ = ["Listing", "Money"]


@dataclass(frozen=True, slots=True)
class Money:
    """How one ledger's amounts read: its asset's decimals and symbol (unknown: atomic)."""

    decimals: int | None = None
    symbol: str = ""

    def format(self, amount: int | None) -> str:
        if amount is None:
            return "-"
        text = format_amount(amount, self.decimals)
        return f"{text} {self.symbol}".strip() if self.decimals is not None else f"{text} (atomic)"


@dataclass(frozen=True, slots=True)
class Listing:
    """A titled table of string cells; ``columns`` name the keys of each row."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: Sequence[dict[str, str]] = field(default_factory=tuple)
    hidden: tuple[str, ...] = ()  # exported, but not shown on the page

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.hidden)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_cell(row.get(c, "")) for c in self.columns])
        return buffer.getvalue()

    def to_json(self) -> str:
        rows = [{c: row.get(c, "") for c in self.columns} for row in self.rows]
        return json.dumps({"table": self.name, "columns": list(self.columns), "rows": rows})


def _cell(value: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula; a
    # quote in front keeps it text. Negative numbers never occur here.
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
