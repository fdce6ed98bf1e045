"""The inference gateway's chat as a paid MCP tool: ``exact`` charges the quote, a channel charges the tokens used.

Real pieces: the gateway and its paywall on the session's memory chain with
our escrow contracts at their canonical addresses, SQLite payment and channel
stores, the local facilitator, and ``mcp``'s ``ClientSession`` over
streamable HTTP driven through ``httpx.ASGITransport`` into
``Gateway.mcp_app()``, and ``farthing inference gateway --mcp`` as a process. Only vLLM is the fake (``tests/inference/fake_vllm.py``,
five completion tokens). The buyer signs its own deposit and vouchers, so the
test knows each voucher's ceiling; the charge is read from the payment
response and the channel row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from farthing.inference.pricing import call_price_atomic
from farthing.paywall.wire import unb64_json
from tests.inference.conftest import (  # noqa: F401 - paid_env is a fixture
    fake_vllm_process,
    paid_env,
    payment_header,
)
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens
from tests.inference.test_cli import gateway_process
from tests.inference.test_gateway_metered import (  # noqa: F401 - the metered fixture
    COMPLETION_TOKENS,
    DEPOSIT,
    MESSAGES,
    Metered,
    metered_fixture,
)
from tests.paywall.mcp.conftest import mcp_session

pytestmark = pytest.mark.anyio

CHAT = {"model": MODEL, "messages": MESSAGES, "max_tokens": 40}


@pytest.fixture
def fake() -> FakeVllm:
    return FakeVllm()


@asynccontextmanager
async def _session(app: Any) -> AsyncIterator[ClientSession]:
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30.0) as http,
        streamable_http_client("http://localhost/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _offers(result: CallToolResult) -> dict[str, dict[str, Any]]:
    assert result.isError is True and result.structuredContent is not None
    return {offer["scheme"]: offer for offer in result.structuredContent["accepts"]}


def _meta(offer: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return {"x402/payment": {"x402Version": 2, "payload": payload, "accepted": offer}}


async def test_the_chat_tool_is_metered_per_token_through_a_channel(
    metered: Metered, fake: FakeVllm
) -> None:
    gateway = metered.gateway(fake)
    async with _session(gateway.mcp_app()) as session:
        assert [t.name for t in (await session.list_tools()).tools] == ["chat"]
        offers = _offers(await session.call_tool("chat", CHAT))
        assert set(offers) == {"exact", "batch-settlement"}
        ceiling = int(offers["batch-settlement"]["amount"])
        per_1k = (await gateway_price(gateway))["price_per_1k_atomic"]
        used = call_price_atomic(prompt_tokens(MESSAGES) + COMPLETION_TOKENS, per_1k)
        assert 0 < used < ceiling
        payloads = [metered.deposit(DEPOSIT, ceiling), metered.voucher(used + ceiling)]
        for n, payload in enumerate(payloads, start=1):
            offer = _offers(await session.call_tool("chat", CHAT))["batch-settlement"]
            result = await session.call_tool("chat", CHAT, meta=_meta(offer, payload))
            assert result.isError is False, result.content
            assert result.structuredContent["usage"]["completion_tokens"] == COMPLETION_TOKENS
            settled = result.meta["x402/payment-response"]
            assert settled["extra"]["chargedAmount"] == str(used)
            assert settled["extra"]["channelState"]["chargedCumulativeAmount"] == str(n * used)
        # A field the price does not cover never reaches the model, paid or not.
        refused = await session.call_tool("chat", {**CHAT, "tools": []})
        assert refused.isError is True and "accepts" not in (refused.structuredContent or {})
    (record,) = metered.store.records()
    assert record.charged == 2 * used


async def test_the_chat_tool_charges_the_quote_with_exact(metered: Metered, fake: FakeVllm) -> None:
    env = metered.env
    before = env.balance(env.payer.address)
    async with _session(metered.gateway(fake).mcp_app()) as session:
        challenge = await session.call_tool("chat", CHAT)
        offer = _offers(challenge)["exact"]
        header, amount = payment_header(env.payer, _as_response(challenge))
        result = await session.call_tool("chat", CHAT, meta={"x402/payment": unb64_json(header)})
        assert result.isError is False, result.content
        assert result.meta["x402/payment-response"]["success"] is True
    assert amount == int(offer["amount"])
    assert env.balance(env.payer.address) == before - amount


async def gateway_price(gateway: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://localhost"
    ) as http:
        answer: dict[str, Any] = (await http.post("/v1/price", json=CHAT)).json()
        return answer


def _as_response(result: CallToolResult) -> httpx.Response:
    """The 402 result as the HTTP 402 the shared payment helper reads."""
    from farthing.paywall.wire import b64_json

    assert result.structuredContent is not None
    return httpx.Response(402, headers={"payment-required": b64_json(result.structuredContent)})


async def test_inference_gateway_mcp_serves_the_chat_tool_as_a_process(tmp_path: Path) -> None:
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, "--free", "--mcp"], tmp_path) as (ready, _),
    ):
        async with mcp_session(ready["url"]) as session:
            result = await session.call_tool("chat", {**CHAT, "max_tokens": 4})
        assert result.isError is False, result.content
        assert result.structuredContent["model"] == MODEL
        async with httpx.AsyncClient(timeout=10.0) as http:
            assert (await http.get(f"{ready['url']}/v1/models")).status_code == 200
