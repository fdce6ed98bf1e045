"""Showing a run to people (rich tables) and to scripts (one JSON object).

``farthing agent run`` and ``farthing demo`` print the same things: what was
bought (with price, transaction, task and purpose), what was read for free,
what was skipped and why, any possible spend still awaiting the chain, the
spend against the budget, and the answer.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from farthing.agents.outcome import REASONS
from farthing.agents.runner import RunReport
from farthing.ledger.ids import format_transfer_id
from farthing.wallet.money import Asset

__all__ = ["render_report", "report_json"]


def render_report(console: Console, report: RunReport, asset: Asset) -> None:
    """The purchases, the pages read free, what was skipped, spend against budget, the answer."""
    f = asset.format
    if report.bought:
        table = Table("bought", "price", "transaction", "task", "purpose", title="Purchases")
        for item in report.bought:
            table.add_row(
                item.title or item.url,
                f(item.amount),
                _short(item.outcome.tx_hash),
                item.outcome.task_id or "-",
                item.outcome.purpose or "-",
            )
        console.print(table)
    else:
        console.print("Nothing was bought.")
    if report.read_free:
        # Already owned, signed in, or free: read, never paid for in this run.
        free = Table("read free", "why", "task", title="Read without paying")
        for item in report.read_free:
            why = REASONS.get(item.outcome.reason or "", "no payment was asked")
            free.add_row(item.title or item.url, why, item.outcome.task_id or "-")
        console.print(free)
    if report.skipped:
        skipped = Table("skipped", "price", "why", title="Skipped")
        for skip in report.skipped:
            price = "-" if skip.price is None else ("free" if skip.price == 0 else f(skip.price))
            skipped.add_row(skip.title or skip.url, price, skip.reason)
        console.print(skipped)
    for outcome in report.possible_spend:
        console.print(f"[yellow]possible spend:[/yellow] {outcome.describe()}")
    console.print(
        f"Spent {f(report.spent)} of the {f(report.budget)} budget on {len(report.bought)} "
        f"purchase(s) for task {report.task_id}."
    )
    console.print(f"Brain: {report.brain}")
    console.print(f"[bold]Answer:[/bold] {report.answer}")


def report_json(report: RunReport) -> dict[str, Any]:
    """A run as plain JSON values: amounts are atomic-unit ints, ids decimal strings."""
    return {
        "task_id": report.task_id,
        "payments": len(report.bought),
        "read_free": len(report.read_free),
        "skipped": len(report.skipped),
        "spent_atomic": report.spent,
        "budget_atomic": report.budget,
        "possible_spend": len(report.possible_spend),
        "bought": [
            {
                "url": item.url,
                "title": item.title,
                "amount_atomic": item.amount,
                "transaction": item.outcome.tx_hash,
                "payment_id": format_transfer_id(item.outcome.payment_id)
                if item.outcome.payment_id
                else None,
                "purpose": item.outcome.purpose,
            }
            for item in report.bought
        ],
        "skipped_items": [
            {"url": s.url, "title": s.title, "reason": s.reason, "price_atomic": s.price}
            for s in report.skipped
        ],
        "answer": report.answer,
    }


def _short(tx_hash: str | None) -> str:
    return f"{tx_hash[:12]}…" if tx_hash else "-"
