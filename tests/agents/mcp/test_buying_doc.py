"""The Python example in docs/mcp.md's "Buying over MCP" runs as written and pays the tool.

The block is read out of the file, executed, and its ``forecast(payer, url)``
called against the module's real MCP server (the x402 SDK's payment wrapper
settled by our facilitator, memory chain): the tool's text comes back and
the books post exactly the price.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.agents.mcp.conftest import PRICE, Buyer

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[3] / "docs" / "mcp.md"


def buying_block() -> str:
    text = DOC.read_text()
    section = text.split("## Buying over MCP", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "docs/mcp.md's Buying over MCP has no Python block"
    return found.group(1)


async def test_the_buying_example_runs_as_written(
    buyer: Buyer, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(buying_block(), str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    text = await namespace["forecast"](buyer.payer, buyer.shop.mcp_url)
    assert text == "sunny in Lisbon"
    assert capsys.readouterr().out.startswith("paid ")
    assert buyer.posted() == PRICE
