"""Fixtures for x402 over MCP, the seller's side: real MCP clients over streamable HTTP.

Servers are real (uvicorn on 127.0.0.1, through ``serve_in_thread``), the
chain is the module's anvil from ``tests/paywall/conftest.py``, and calls go
through ``mcp``'s own ``ClientSession``; payments are signed with Farthing's
wallet and carried in ``_meta["x402/payment"]`` as x402's binding says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult

from farthing.paywall import PaymentStore, PaywallOptions
from farthing.paywall.mcp.tools import PaidTools
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import ChainEnv, sign_for


@asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with the server at ``url`` (its /mcp endpoint)."""
    async with (
        httpx.AsyncClient(timeout=30.0) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def call_tool(
    url: str, name: str, arguments: dict[str, Any] | None = None, meta: Any = None
) -> CallToolResult:
    """One tools/call on the MCP server at ``url``."""
    async with mcp_session(url) as session:
        return await session.call_tool(name, arguments or {}, meta=meta)


def paid_tools(
    name: str, env: ChainEnv, store: PaymentStore, **options: Any
) -> tuple[FastMCP, PaidTools]:
    """A stateless FastMCP server and its PaidTools, paying the module's merchant in our token."""
    server = FastMCP(name, stateless_http=True, json_response=True)
    settings = PaywallOptions(
        routes=(),
        facilitator=env.facilitator(),
        store=store,
        pay_to=env.merchant,
        asset=env.asset,
        **options,
    )
    return server, PaidTools(server, options=settings)


def payment_for(challenge: dict[str, Any], payer: LocalSigner, **overrides: Any) -> dict[str, Any]:
    """``_meta`` paying the first exact offer of a 402 result's ``structuredContent``."""
    accepts = next(a for a in challenge["accepts"] if a["scheme"] == "exact")
    payload: dict[str, Any] = unb64_json(sign_for(accepts, payer, **overrides))
    payload["resource"] = challenge["resource"]
    return {"x402/payment": payload}


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)
