"""A run's tables keep purchases and pages read without paying apart, as its JSON does.

A report with one purchase and one page read again after signing in is
rendered to a recording console, and the text is read as a user reads it.
"""

from __future__ import annotations

from rich.console import Console

from farthing.agents.outcome import PaymentOutcome
from farthing.agents.render import render_report, report_json
from farthing.agents.runner import Purchase, RunReport
from farthing.wallet.money import Asset


def test_free_reads_are_not_listed_as_purchases() -> None:
    asset = Asset("eip155:31337", "0x" + "ab" * 20, 6, "USD Coin", "2", "USDC")
    paid = PaymentOutcome("paid", "http://blog.test/a", amount=13_850, tx_hash="0x" + "1" * 64)
    owned = PaymentOutcome("free", "http://blog.test/b", reason="already_owned")
    report = RunReport(
        task_id="t",
        task="read",
        budget=100_000,
        brain="rules",
        bought=[Purchase("http://blog.test/a", "Bought one", paid, 5, "on topic", 100)],
        read_free=[Purchase("http://blog.test/b", "Owned one", owned, 5, "on topic", 100)],
    )
    console = Console(record=True, width=200)
    render_report(console, report, asset)
    text = console.export_text()
    purchases = text[text.index("Purchases") : text.index("Read without paying")]
    assert "Bought one" in purchases and "Owned one" not in purchases
    assert "signed in with the paying wallet" in text[text.index("Read without paying") :]
    assert report_json(report)["payments"] == 1 and report_json(report)["read_free"] == 1
