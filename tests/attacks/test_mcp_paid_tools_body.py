"""Anyone who can reach a developer's ``PaidTools`` server, served as docs/mcp.md said (``FastMCP.streamable_http_app()`` behind ``HostGuard``), gets 500s from it with a body that is not UTF-8, nests 100,000 deep or holds a lone surrogate escape, and its body is bounded only by the ``mcp`` package's own limit.

Found from outside: the site's ``/mcp`` and the gateway's go through
``McpMount`` (size, depth and text checked first), a developer's paid tools
did not. ``PaidTools.app()`` now serves the same server through ``McpMount``
(docs/mcp.md shows it): each of those bodies is a 400 with the reason, a
body past 64 KiB a 413, and a paid call works as before. Real parts: the
module's anvil and token, a SQLite payment database, the FastMCP server with
a paid tool on uvicorn at 127.0.0.1, ``mcp``'s ``ClientSession`` paying with
``_meta["x402/payment"]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farthing.paywall import PaymentStore
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, chain_env, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, paid_tools, payment_for, text_of

__all__ = ["chain_env"]

pytestmark = pytest.mark.anvil

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
BODIES = {
    "invalid-utf8": (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","x":"\xff"}', 400),
    "deep-arrays": (b"[" * 100_000 + b"]" * 100_000, 413),
    "deep-in-bounds": (b"[" * 20_000 + b"]" * 20_000, 400),
    "lone-surrogate": (b'{"jsonrpc":"2.0","id":"\\ud800","method":"tools/list"}', 400),
    "ten-megabytes": (b'{"x":"' + b"a" * 10_000_000 + b'"}', 413),
}


@pytest.fixture(scope="module")
def url(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("paid-tools-body")
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    _server, paid = paid_tools("weather", chain_env, store)

    @paid.tool(PRICE_ATOMIC)
    def forecast(city: str) -> str:
        return f"PAID-PART sunny in {city}"

    with serve_in_thread(paid.app()) as served:
        yield served
    store.dispose()


@pytest.mark.parametrize(("body", "status"), list(BODIES.values()), ids=list(BODIES))
def test_a_hostile_body_is_a_4xx_not_a_500(url: str, body: bytes, status: int) -> None:
    answer = httpx.post(f"{url}/mcp", headers=HEADERS, content=body, timeout=30.0)
    assert answer.status_code == status, answer.text


def test_a_paid_call_still_works_through_the_app(url: str, chain_env: ChainEnv) -> None:
    payer = chain_env.new_payer()
    unpaid = asyncio.run(call_tool(url, "forecast", {"city": "Lisbon"}))
    assert unpaid.isError is True and "PAID-PART" not in text_of(unpaid)
    meta = payment_for(unpaid.structuredContent, payer)
    paid = asyncio.run(call_tool(url, "forecast", {"city": "Lisbon"}, meta))
    assert paid.isError is False and "PAID-PART sunny in Lisbon" in text_of(paid)
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    assert httpx.get(f"{url}/other", timeout=30.0).status_code == 404
