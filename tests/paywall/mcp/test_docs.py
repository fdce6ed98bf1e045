"""docs/mcp.md's PaidTools example runs as written and sells its tools over MCP.

The first Python block of docs/mcp.md is executed with the module's anvil,
our token and facilitator, and a migrated ledger; its FastMCP app is served
on uvicorn at 127.0.0.1 and paid with Farthing's own signing: the documented
fixed and computed prices are what the 402 results ask and what the chain
moves.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import LedgerRevenueBook
from tests.paywall.conftest import ChainEnv, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, payment_for, text_of

pytestmark = pytest.mark.anvil

DOC = Path(__file__).resolve().parents[3] / "docs" / "mcp.md"


def test_the_paid_tools_example_runs(
    chain_env: ChainEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)[:1]
    monkeypatch.chdir(tmp_path)  # its PaymentStore.sqlite("paywall.sqlite")
    ledger = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}"))
    upgrade_database(ledger)
    names: dict[str, Any] = {
        "facilitator": chain_env.facilitator(),
        "books": LedgerRevenueBook(ledger),
        "merchant": chain_env.merchant,
        "usdc": chain_env.asset,
    }
    exec(compile(example, str(DOC), "exec"), names)  # noqa: S102 - the documented example
    payer = chain_env.new_payer()
    with serve_in_thread(names["app"]) as url:
        one = asyncio.run(call_tool(url, "forecast", {"city": "Oslo"}))
        assert one.structuredContent["accepts"][0]["amount"] == "10000"
        paid = asyncio.run(
            call_tool(url, "forecast", {"city": "Oslo"}, payment_for(one.structuredContent, payer))
        )
        assert text_of(paid) == "sunny in Oslo"
        many = asyncio.run(call_tool(url, "forecasts", {"cities": ["a", "b"]}))
        assert many.structuredContent["accepts"][0]["amount"] == "20000"
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - 10_000
    ledger.dispose()
