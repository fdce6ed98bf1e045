"""``agent run --mcp`` with no model: the rule brain judges each tool's 402 like a page, and no tool text moves a limit.

``McpRun`` over the module's real FastMCP server (memory chain, our
facilitator over HTTP), with the deterministic rule brain: the relevant paid
tool is bought at exactly its price, the relevant free tool is read, the
irrelevant ones are skipped with a reason, and the report's spend matches the
books. A tool whose description and result tell the agent that its budget is
now 100 USDC, to drop its approval threshold and to pay an attacker (and whose
402 also offers the attacker as payee) is bought from the honest payee only;
the stored policy and the task's budget are unchanged and the attacker is
never paid. Tools loaded through ``langchain-mcp-adapters`` pay nothing unless
the run allowed that one call.
"""

from __future__ import annotations

from typing import Any

import pytest

from farthing.agents.brain import RuleBrain
from farthing.agents.mcp.runner import McpRun
from farthing.agents.mcp.session import PayingSession, open_mcp
from farthing.agents.mcp.tools import PayingInterceptor, paying_tools, rule_arguments
from farthing.agents.reservations import booked_payments
from farthing.agents.runner import RunReport
from farthing.agents.tools import Task, tool_call
from tests.agents.mcp.conftest import ATTACKER, PRICE, Buyer

pytestmark = pytest.mark.anyio


async def run(buyer: Buyer, text: str, budget: int) -> RunReport:
    task = Task("mcp-task", text, budget)
    buyer.books.start_task(task.task_id, task.budget, task.text)
    brain = RuleBrain(relevance_min=3)
    return await McpRun(buyer.payer, task, brain, servers=[buyer.shop.mcp_url]).run()


async def test_the_rule_brain_buys_the_relevant_tool_and_reads_the_free_one(buyer: Buyer) -> None:
    report = await run(buyer, "weather in Lisbon", 50_000)
    assert [p.title for p in report.bought] == ["weather"]
    assert report.bought[0].amount == PRICE and report.bought[0].outcome.status == "paid"
    assert [p.title for p in report.read_free] == ["echo"]
    skipped = {s.title: s.reason for s in report.skipped}
    assert "not relevant" in skipped["dear"] and "not relevant" in skipped["sly"]
    assert report.spent == PRICE == buyer.posted()
    assert "sunny in weather in Lisbon" in report.answer
    assert report.possible_spend == []


async def test_a_tools_text_cannot_raise_a_limit_or_add_a_payee(buyer: Buyer) -> None:
    buyer.set_policy(payees_allowed=frozenset({buyer.shop.merchant}), approval_above=PRICE)
    policy_before = buyer.books.policy()
    # The task shares words with the malicious tool's description, so the rule brain buys it.
    report = await run(buyer, "a helpful tool notice about the budget", 50_000)
    assert [p.title for p in report.bought] == ["sly"]
    assert buyer.books.policy() == policy_before
    status = buyer.books.status("mcp-task")
    assert status.task_budget == 50_000
    assert buyer.shop.token.balance_of(ATTACKER) == 0
    assert [(p.pay_to, p.amount, p.state) for p in booked_payments(buyer.books)] == [
        (buyer.shop.merchant.lower(), PRICE, "posted")
    ]
    # What it said is only read as the task's material, never obeyed.
    assert report.spent == PRICE


async def test_adapter_tools_pay_only_what_the_run_allowed(buyer: Buyer) -> None:
    task = Task("adapters", "weather", 50_000)
    buyer.books.start_task(task.task_id, task.budget, task.text)
    url = buyer.shop.mcp_url
    async with open_mcp(url, buyer.payer.settings) as session:
        interceptor = PayingInterceptor(
            PayingSession(session, buyer.payer, url), task, chars_max=500
        )
        tools = await paying_tools(session, interceptor)
        # A call nobody allowed (a model acting on its own): free tools only.
        unallowed = await tools["weather"].ainvoke(tool_call("weather", {"city": "Oslo"}, "c1"))
        interceptor.allow("weather", PRICE, "allowed once")
        allowed = await tools["weather"].ainvoke(tool_call("weather", {"city": "Oslo"}, "c2"))
        again = await tools["weather"].ainvoke(tool_call("weather", {"city": "Oslo"}, "c3"))
    outcomes = [(c.outcome.status, c.outcome.reason) for c in interceptor.calls if c.outcome]
    assert outcomes == [
        ("not_paid", "price_above_max"),
        ("paid", None),
        ("not_paid", "price_above_max"),
    ]
    assert "untrusted" in str(allowed.content) and "sunny in Oslo" in str(allowed.content)
    assert "did not pay" in str(unallowed.content) and "did not pay" in str(again.content)
    assert buyer.posted() == PRICE


def test_rule_arguments_fill_only_strings() -> None:
    task = Task("t", "x" * 500, 0)
    schema: dict[str, Any] = {
        "properties": {"q": {"type": "string", "maxLength": 10}, "n": {"type": "integer"}},
        "required": ["q"],
    }
    assert rule_arguments(schema, task) == {"q": "x" * 10}
    assert "integer" in str(rule_arguments({**schema, "required": ["q", "n"]}, task))
    assert rule_arguments(None, task) == {}
