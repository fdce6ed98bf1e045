"""A hostile or broken MCP seller can neither take money twice nor lose the agent's record of it, nor crash the client.

Against the module's real FastMCP server (memory chain, the x402 SDK's
payment wrapper, our facilitator over HTTP): a tool that fails after the
payment is verified leaves the payment reserved as possible spend and the
chain resolves it void; a tool that answers after the buyer stopped waiting
(and settles anyway) is possible spend that the chain resolves as posted,
once; a result larger than the client reads is a one-line error (memory
bounded, the call ends at its read timeout). The tool
result binding's reader is fed forged results directly: an oversized or
non-JSON PaymentRequired, a payment-required result with a receipt claiming
success, a receipt naming another payer. A ``settlement_pending`` answer is
asked again with the same payment, never a new signature.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, TextContent

from farthing.agents.challenge import Challenge, MalformedChallenge
from farthing.agents.mcp.binding import tool_answer, tool_challenge
from farthing.agents.mcp.session import RESPONSE_BYTES_MAX, PayingSession, ToolCall, open_mcp
from farthing.agents.payer import Intent, Prepared
from farthing.agents.reservations import booked_payments
from farthing.agents.resolve import resolve_possible_spend
from tests.agents.mcp.conftest import PRICE, Buyer, Shop, make_buyer, payment_required
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anyio


async def call(buyer: Buyer, tool: str, args: dict[str, Any], **intent: Any) -> ToolCall:
    async with open_mcp(buyer.shop.mcp_url, buyer.payer.settings) as session:
        paying = PayingSession(session, buyer.payer, buyer.shop.mcp_url)
        return await paying.call_tool(tool, args, **intent)


async def test_a_tool_that_fails_after_payment_is_possible_spend_then_void(buyer: Buyer) -> None:
    result = await call(buyer, "breaks", {"city": "Faro"}, max_price=PRICE)
    outcome = result.outcome
    assert outcome is not None and not result.delivered
    assert (outcome.status, outcome.reason) == ("possible_spend", "settlement_unknown")
    assert buyer.states() == ["reserved"]
    # Nothing settled it; once its window closes the chain says so and it is voided.
    (payment,) = booked_payments(buyer.books)
    assert payment.valid_before is not None
    resolved = resolve_possible_spend(
        buyer.books, buyer.shop.chain, payer=buyer.agent.address, now_s=payment.valid_before + 1
    )
    assert [r.action for r in resolved] == ["voided"]
    assert buyer.shop.token.balance_of(buyer.agent.address) == 1_000_000


async def test_an_answer_after_the_timeout_is_booked_once_from_the_chain(
    shop: Shop, tmp_path: Path
) -> None:
    buyer = make_buyer(shop, tmp_path, read_timeout_s=0.5)
    try:
        async with open_mcp(shop.mcp_url, buyer.payer.settings) as session:
            paying = PayingSession(session, buyer.payer, shop.mcp_url)
            result = await paying.call_tool("slow", {"city": "Braga"}, max_price=PRICE)
            outcome = result.outcome
            assert outcome is not None and outcome.status == "possible_spend", result
            assert outcome.reason == "timeout" and result.error is not None
            assert buyer.states() == ["reserved"]
            # The session stays open while the seller finishes and settles after all.
            deadline = time.monotonic() + 15
            while shop.token.balance_of(buyer.agent.address) == 1_000_000:
                assert time.monotonic() < deadline, "the seller never settled"
                await anyio.sleep(0.1)
        # The chain is the record: the payment posts, once.
        resolved = resolve_possible_spend(buyer.books, shop.chain, payer=buyer.agent.address)
        assert [r.action for r in resolved] == ["posted"]
        assert buyer.states() == ["posted"] and buyer.posted() == PRICE
        assert resolve_possible_spend(buyer.books, shop.chain, payer=buyer.agent.address) == []
        assert shop.token.balance_of(buyer.agent.address) == 1_000_000 - PRICE
    finally:
        buyer.database.dispose()


@pytest.fixture(scope="module")
def huge_url() -> Iterator[str]:
    """A server of its own whose one tool answers more than any buyer reads."""
    server = FastMCP("huge", log_level="WARNING")

    @server.tool(description="Answers with more than any buyer reads.")
    async def huge() -> str:
        return "x" * (RESPONSE_BYTES_MAX + 1024)

    with serve_in_thread(server.streamable_http_app()) as url:
        yield f"{url}/mcp"


async def test_a_result_larger_than_the_client_reads_is_an_error(
    shop: Shop, huge_url: str, tmp_path: Path
) -> None:
    # The client stops reading at RESPONSE_BYTES_MAX; the call then ends at its read timeout.
    buyer = make_buyer(shop, tmp_path, read_timeout_s=1.0)
    try:
        async with open_mcp(huge_url, buyer.payer.settings) as session:
            result = await PayingSession(session, buyer.payer, huge_url).call_tool("huge", {})
        assert result.result is None and result.outcome is None
        assert result.error is not None and "\n" not in result.error
        assert booked_payments(buyer.books) == []
    finally:
        buyer.database.dispose()


def _offer(buyer_shop: Shop) -> dict[str, Any]:
    asset = buyer_shop.asset
    return {
        "scheme": "exact",
        "network": asset.network,
        "asset": asset.address,
        "amount": str(PRICE),
        "payTo": buyer_shop.merchant,
        "maxTimeoutSeconds": 60,
        "extra": {"name": asset.name, "version": asset.version},
    }


def test_forged_payment_required_results_are_read_safely(shop: Shop) -> None:
    good = payment_required("t", [_offer(shop)])
    assert isinstance(tool_challenge(good), Challenge)
    # The SDK's nulls are accepted.
    with_nulls = payment_required("t", [_offer(shop)], extensions=None)
    assert isinstance(tool_challenge(with_nulls), Challenge)
    too_large = payment_required("t", [_offer(shop)], "x" * 20_000)
    assert isinstance(tool_challenge(too_large), MalformedChallenge)
    # Only the text fallback, and it is not JSON: a malformed 402, not a crash.
    text_only = CallToolResult(
        content=[TextContent(type="text", text='{"x402Version": 2, "accepts": [')], isError=True
    )
    assert isinstance(tool_challenge(text_only), MalformedChallenge)
    deep = '{"x402Version": 2, "accepts": ' + "[" * 5_000 + "]" * 5_000 + "}"
    nested = CallToolResult(content=[TextContent(type="text", text=deep)], isError=True)
    assert isinstance(tool_challenge(nested), MalformedChallenge)
    # An ordinary tool error is not a payment request; a success never is.
    plain = CallToolResult(content=[TextContent(type="text", text="no such city")], isError=True)
    assert tool_challenge(plain) is None
    success = CallToolResult(
        content=[TextContent(type="text", text=json.dumps(good.structuredContent))]
    )
    assert tool_challenge(success) is None


def test_a_refusal_with_a_success_receipt_is_not_delivered(shop: Shop) -> None:
    refused = payment_required("t", [_offer(shop)])
    refused.meta = {"x402/payment-response": {"success": True, "transaction": "0x" + "1" * 64}}
    answer = tool_answer(refused)
    assert answer.refused and not answer.delivered


async def test_a_receipt_naming_another_payer_is_not_booked_as_paid(buyer: Buyer) -> None:
    # The seller answers content with a receipt for someone else's payment: the books
    # ask the chain, which shows our authorization unused: possible spend, not paid.
    challenge = tool_challenge(payment_required("t", [_offer(buyer.shop)]))
    assert isinstance(challenge, Challenge)
    prepared = buyer.payer.prepare(
        f"{buyer.shop.mcp_url}#tool=t", challenge, Intent(max_price=PRICE)
    )
    assert isinstance(prepared, Prepared)
    forged = CallToolResult(content=[TextContent(type="text", text="content")])
    forged.meta = {
        "x402/payment-response": {
            "success": True,
            "transaction": "0x" + "2" * 64,
            "network": buyer.shop.asset.network,
            "payer": "0x" + "3" * 40,
        }
    }
    outcome = buyer.payer.conclude(prepared, tool_answer(forged))
    assert (outcome.status, outcome.reason) == ("possible_spend", "settlement_unknown")
    assert buyer.states() == ["reserved"]


async def test_settlement_pending_is_asked_again_with_the_same_payment(buyer: Buyer) -> None:
    result = await call(buyer, "pending", {}, max_price=PRICE)
    # The seller saw one payment twice (its nonce), never a second signature.
    assert result.delivered and result.text(20) == "seen 2", result
    assert result.outcome is not None and result.outcome.status == "paid"
    assert buyer.states() == ["posted"]
