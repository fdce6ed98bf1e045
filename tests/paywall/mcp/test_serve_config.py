"""``farthing paywall serve --config`` with ``mcp = true`` answers a real MCP client at ``/mcp``, as a process.

Real processes on anvil: the test site under uvicorn on 127.0.0.1 as the
upstream, then ``farthing paywall serve`` in front of it with ``mcp = true``
in its config. An MCP ``ClientSession`` lists the ``fetch`` tool, gets the 402
result, pays it with ``_meta["x402/payment"]`` and reads the article; the
chain moves by exactly the price; a forged Host is refused before MCP runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cli_env, free_port
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, mcp_session, payment_for, text_of
from tests.paywall.test_serve_origin import Served, start_serve, write_config

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def served(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("serve-mcp")
    with serve_in_thread(inner_app()) as upstream:
        config = write_config(chain_env, folder, upstream, public_url=None)
        config.write_text("mcp = true\n" + config.read_text())
        running = start_serve(config, folder, free_port())
        try:
            yield running
        finally:
            running.stop()


def test_serve_with_mcp_sells_the_article_over_mcp(served: Served, chain_env: ChainEnv) -> None:
    async def tools() -> Any:
        async with mcp_session(served.url) as session:
            return await session.list_tools()

    assert [t.name for t in asyncio.run(tools()).tools] == ["fetch"]
    payer = chain_env.new_payer()
    unpaid = asyncio.run(call_tool(served.url, "fetch", {"path": "/articles/farthing"}))
    assert unpaid.isError is True and "PAID-PART" not in text_of(unpaid)
    meta = payment_for(unpaid.structuredContent, payer)
    paid = asyncio.run(call_tool(served.url, "fetch", {"path": "/articles/farthing"}, meta))
    assert paid.isError is False, text_of(paid)
    assert text_of(paid).count("PAID-PART") == 2
    assert paid.meta["x402/payment-response"]["success"] is True
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    forged = httpx.post(
        f"{served.url}/mcp", headers={"Host": "evil.example"}, content=b"{}", timeout=30.0
    )
    assert forged.status_code == 421


def test_an_mcp_key_that_is_not_a_boolean_is_one_error_line(tmp_path: Path) -> None:
    config = tmp_path / "paywall.toml"
    config.write_text('mcp = "yes"\nupstream = "http://127.0.0.1:9"\n')
    done = subprocess.run(
        [sys.executable, "-m", "farthing", "paywall", "serve", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env=cli_env(tmp_path / "data"),
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"error: {config}: mcp must be true or false"]
