"""The agent's paying MCP client pays a tool's 402 under the same policy, approvals and books as a page.

Against a real FastMCP server over streamable HTTP (uvicorn, 127.0.0.1):
``weather`` is paid through the x402 SDK's own ``x402.mcp`` payment wrapper,
settled by our facilitator app over HTTP on the memory chain, so this is also
the interop test: the chain moves exactly the price, the books post it and
reconcile. Over budget, above ``max_price`` or to a payee or asset the policy
refuses, or on a host the policy's lists do not allow (the MCP server's),
nothing is signed or reserved; above the approval threshold the call
waits for a person; a refused settle is voided; content without a receipt
stays reserved as possible spend, reported once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from farthing.agents.approvals import decide_approval, list_approvals
from farthing.agents.mcp.session import PayingSession, ToolCall, open_mcp
from farthing.agents.reservations import booked_payments
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import reconcile
from tests.agents.mcp.conftest import ATTACKER, DEAR, PRICE, Buyer

pytestmark = pytest.mark.anyio


async def call(buyer: Buyer, tool: str, args: dict[str, Any], **intent: Any) -> ToolCall:
    async with open_mcp(buyer.shop.mcp_url, buyer.payer.settings) as session:
        paying = PayingSession(session, buyer.payer, buyer.shop.mcp_url)
        return await paying.call_tool(tool, args, **intent)


async def test_a_paid_tool_within_budget_posts_exactly_the_price(buyer: Buyer) -> None:
    shop = buyer.shop
    start = shop.chain.block_number()
    merchant_before = shop.token.balance_of(shop.merchant)
    result = await call(buyer, "weather", {"city": "Lisbon"}, max_price=PRICE, task_id=None)
    assert result.delivered, result
    assert result.text(100) == "sunny in Lisbon"
    assert result.outcome is not None and result.outcome.status == "paid"
    assert result.outcome.amount == PRICE and result.outcome.tx_hash
    assert shop.token.balance_of(shop.merchant) == merchant_before + PRICE
    assert shop.token.balance_of(buyer.agent.address) == 1_000_000 - PRICE
    (payment,) = booked_payments(buyer.books)
    assert (payment.state, payment.amount, payment.pay_to) == (
        "posted",
        PRICE,
        shop.merchant.lower(),
    )
    assert payment.resource == f"{shop.mcp_url}#tool=weather"
    report = reconcile(buyer.database, TokenChainView(shop.chain, shop.asset), from_block=start)
    assert not report.unresolved_breaks


async def test_a_free_tool_is_free(buyer: Buyer) -> None:
    result = await call(buyer, "echo", {"text": "hi"})
    assert result.delivered and result.text(50) == "echo: hi"
    assert result.outcome is not None and result.outcome.status == "free"
    assert booked_payments(buyer.books) == []


class CountingSigner:
    """The agent's own key, counting what it signs: the refusals must sign nothing."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.signed = 0

    @property
    def address(self) -> str:
        return str(self.inner.address)

    def sign_typed_data(self, *args: Any) -> bytes:
        self.signed += 1
        return bytes(self.inner.sign_typed_data(*args))


async def test_over_max_price_or_budget_nothing_is_signed_or_reserved(buyer: Buyer) -> None:
    signer = CountingSigner(buyer.payer.signer)
    buyer.payer.signer = signer
    over_max = await call(buyer, "weather", {"city": "Oslo"}, max_price=PRICE - 1)
    assert over_max.outcome is not None
    assert (over_max.outcome.status, over_max.outcome.reason) == ("not_paid", "price_above_max")
    buyer.books.start_task("small", PRICE - 1, "a task too small for the price")
    over_budget = await call(buyer, "weather", {"city": "Oslo"}, task_id="small")
    assert over_budget.outcome is not None
    assert (over_budget.outcome.status, over_budget.outcome.reason) == (
        "not_paid",
        "exceeds_task_budget",
    )
    assert over_budget.result is None  # no content without payment
    assert signer.signed == 0
    assert booked_payments(buyer.books) == []
    assert buyer.shop.token.balance_of(buyer.agent.address) == 1_000_000


async def test_above_the_approval_threshold_it_waits_for_a_person(buyer: Buyer) -> None:
    # No policy set: the newcomer's default asks a person above 0.10.
    def approve_when_asked() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = list_approvals(buyer.books.database, status="pending")
            if pending:
                decide_approval(buyer.books.database, pending[0].id, approve=True)
                return
            time.sleep(0.05)

    person = threading.Thread(target=approve_when_asked)
    person.start()
    result = await call(buyer, "dear", {"city": "Rome"})
    person.join()
    assert result.outcome is not None and result.outcome.status == "paid", result
    assert result.outcome.approval_id is not None and result.outcome.amount == DEAR
    assert buyer.posted() == DEAR


async def test_a_denied_approval_pays_nothing(buyer: Buyer) -> None:
    def deny_when_asked() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = list_approvals(buyer.books.database, status="pending")
            if pending:
                decide_approval(buyer.books.database, pending[0].id, approve=False)
                return
            time.sleep(0.05)

    person = threading.Thread(target=deny_when_asked)
    person.start()
    result = await call(buyer, "dear", {"city": "Rome"})
    person.join()
    assert result.outcome is not None
    assert (result.outcome.status, result.outcome.reason) == ("not_paid", "approval_denied")
    assert booked_payments(buyer.books) == []


async def test_a_refused_settle_is_voided(buyer: Buyer) -> None:
    result = await call(buyer, "refuses_settle", {}, max_price=PRICE)
    assert result.outcome is not None
    assert (result.outcome.status, result.outcome.reason) == ("refused", "settle_refused")
    assert not result.delivered
    assert buyer.states() == ["voided"]
    assert buyer.shop.token.balance_of(buyer.agent.address) == 1_000_000


async def test_content_without_a_receipt_stays_reserved_as_possible_spend(buyer: Buyer) -> None:
    result = await call(buyer, "no_receipt", {}, max_price=PRICE)
    outcome = result.outcome
    assert outcome is not None
    assert (outcome.status, outcome.reason) == ("possible_spend", "settlement_unknown")
    assert outcome.describe().count("may have been spent") == 1
    assert not result.delivered
    assert buyer.states() == ["reserved"]


async def test_a_payee_or_asset_the_policy_refuses_is_not_paid(buyer: Buyer) -> None:
    buyer.set_policy(payees_allowed=frozenset({buyer.shop.merchant}))
    attacker = await call(buyer, "pays_attacker", {}, max_price=PRICE)
    assert attacker.outcome is not None
    assert (attacker.outcome.status, attacker.outcome.reason) == ("not_paid", "payee_not_allowed")
    odd = await call(buyer, "odd_asset", {}, max_price=PRICE)
    assert odd.outcome is not None
    assert (odd.outcome.status, odd.outcome.reason) == ("not_paid", "unsupported_asset")
    assert booked_payments(buyer.books) == []
    assert buyer.shop.token.balance_of(ATTACKER) == 0


async def test_the_host_lists_apply_to_the_mcp_servers_host(buyer: Buyer) -> None:
    buyer.set_policy(hosts_allowed=frozenset({"tools.example.com"}))
    result = await call(buyer, "weather", {"city": "Oslo"}, max_price=PRICE)
    assert result.outcome is not None
    assert (result.outcome.status, result.outcome.reason) == ("not_paid", "host_not_allowed")
    buyer.set_policy(hosts_denied=frozenset({"127.0.0.1"}))
    denied = await call(buyer, "weather", {"city": "Oslo"}, max_price=PRICE)
    assert denied.outcome is not None and denied.outcome.reason == "host_denied"
    assert booked_payments(buyer.books) == []
