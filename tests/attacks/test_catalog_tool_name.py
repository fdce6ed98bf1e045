"""A buyer (or a caller of ``/settle``) gets a paid tool cataloged under a ``toolName`` carrying terminal escapes, bidi overrides, zero-width or look-alike characters, spaces or newlines, which the facilitator then serves to every catalog reader.

Found from outside: ``farthing facilitator serve`` checked an ``mcp``
declaration's ``toolName`` for length only (1 to 128 characters), while
``serviceName`` and tags get printable-ASCII rules; a tool name is what a
reader will call, so a spoofed or escape-laden one misleads whoever shows
or calls it. Now a ``toolName`` must be what MCP allows a tool's name to be
(ASCII letters, digits, ``_``, ``-``, ``.``; 1 to 128): anything else drops
the declaration, and the payment still settles. Here the real checker, and a
real payment settled on the memory chain through the facilitator's HTTP app
with its SQLite catalog.
"""

from __future__ import annotations

from typing import Any

import pytest

from farthing.paywall.discovery import Catalog, check_declaration, declare_tool
from farthing.paywall.discovery.validation import Refused
from farthing.paywall.errors import PaywallConfigError
from tests.paywall.discovery.conftest import Market, call, catalog, facilitator_for, market

__all__ = ["catalog", "market"]

BAD_NAMES = [
    "weather\x1b[2J",
    "get_weather\u202etxt.exe",
    "get\u200bweather",
    "g\u0435t_weather",  # a Cyrillic e
    "get weather",
    "get\nweather",
    "\uff47\uff45\uff54",
    "a" * 129,
    "",
]


def _tool(name: str) -> dict[str, Any]:
    return {
        "info": {"input": {"type": "mcp", "toolName": name, "inputSchema": {"type": "object"}}},
        "schema": {"type": "object"},
    }


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_tool_name_mcp_would_not_allow_is_refused(name: str) -> None:
    refused = check_declaration(_tool(name))
    assert isinstance(refused, Refused) and refused.reason == "invalid_info"


@pytest.mark.parametrize("name", ["fetch", "get_weather", "Weather-2.v1", "a" * 128])
def test_tool_names_mcp_allows_are_kept(name: str) -> None:
    assert not isinstance(check_declaration(_tool(name)), Refused)
    assert declare_tool(name, {"type": "object"})["info"]["input"]["toolName"] == name


def test_a_seller_declaring_such_a_tool_is_told_at_once() -> None:
    with pytest.raises(PaywallConfigError):
        declare_tool("get\u202eweather", {"type": "object"})


def test_the_payment_settles_and_nothing_is_listed(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    body = market.body(url="https://tools.example/mcp", declaration=_tool("weather\x1b[2J"))
    answer = call(app, "POST", "/settle", json=body)
    assert answer.status_code == 200 and answer.json()["success"] is True
    assert call(app, "GET", "/discovery/resources").json()["items"] == []
