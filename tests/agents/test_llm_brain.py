"""With a chat model, the agent's buy/skip decisions are structured output and its purchases are tool calls.

The brain is ``LlmBrain`` over the real ``ChatOpenAI`` from
``farthing.inference.chat_model``, talking HTTP to a scripted
OpenAI-compatible server (``fake_llm.py``) served by uvicorn; the agent buys
from the real paywalled blog on the memory chain. The test checks what went
over the wire: each decision asked for the bounded ``BuyDecision`` JSON
schema, each purchase was a forced, strict ``fetch_paid`` tool call, and the
tool the model called is what paid.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from farthing.agents.brain import LlmBrain
from farthing.agents.runner import AgentRun, RunReport
from farthing.agents.tools import AgentToolkit, Task
from farthing.inference import InferenceSettings, chat_model
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World
from tests.agents.fake_llm import MODEL, ScriptedModel
from tests.paywall.conftest import serve_in_thread

TASK = "How was the English farthing coin minted, and why was it withdrawn?"


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedModel, str]]:
    model = ScriptedModel()
    with serve_in_thread(model.app()) as url:
        yield model, f"{url}/v1"


def run_agent(world: World, base_url: str, budget: int, app: object = None) -> RunReport:
    chat = chat_model(
        base_url, model=MODEL, settings=InferenceSettings(request_timeout_s=10.0, retry_count_max=0)
    )
    task = Task("llm-task", TASK, budget)
    world.books.start_task(task.task_id, task.budget, task.text)

    async def go() -> RunReport:
        transport = httpx.ASGITransport(app=app or world.app)  # type: ignore[arg-type]
        brain = LlmBrain(chat)
        try:
            async with AgentToolkit(world.payer, task, transport=transport) as toolkit:
                return await AgentRun(toolkit, brain, start_urls=[f"{BLOG}/"]).run()
        finally:
            await brain.aclose()

    return asyncio.run(go())


def test_decisions_are_structured_output_and_purchases_are_tool_calls(
    world: World, scripted: tuple[ScriptedModel, str]
) -> None:
    model, base_url = scripted
    report = run_agent(world, base_url, budget=3 * PRICE_ATOMIC)
    assert MODEL in report.brain
    assert len(report.bought) == 3  # four farthing articles, a budget for three
    assert any("left of the budget" in s.reason for s in report.skipped)
    assert sum("not about the farthing" in s.reason for s in report.skipped) == 2
    assert report.spent == 3 * PRICE_ATOMIC == world.token.balance_of(world.merchant)
    assert report.answer == "The farthing was a quarter of a penny, withdrawn in 1960."

    decisions = [
        r
        for r in model.requests
        if r.get("response_format", {}).get("json_schema", {}).get("name") == "BuyDecision"
    ]
    assert len(decisions) == 6
    schema = decisions[0]["response_format"]["json_schema"]
    assert schema["strict"] is True
    properties = schema["schema"]["properties"]
    assert properties["reason"]["maxLength"] == 160
    assert (properties["relevance"]["minimum"], properties["relevance"]["maximum"]) == (0, 10)
    assert properties["decision"]["enum"] == ["buy", "skip"]

    calls = [r for r in model.requests if r.get("tools")]
    assert len(calls) == 3
    for request in calls:
        assert request["tool_choice"] == {"type": "function", "function": {"name": "fetch_paid"}}
        function = request["tools"][0]["function"]
        assert function["strict"] is True
        assert function["parameters"]["additionalProperties"] is False
        # The URL is bounded by the length of the one being bought, so the grammar stays small.
        url = re.search(r"buy (\S+) for", str(request["messages"][-1]["content"]))
        assert url is not None
        assert function["parameters"]["properties"]["url"]["maxLength"] == len(url.group(1))
    for purchase in report.bought:
        assert purchase.outcome.purpose == "for the task" and purchase.outcome.task_id == "llm-task"


def test_a_model_that_cannot_answer_is_a_skip_not_a_crash(world: World) -> None:
    from tests.conftest import free_port

    report = run_agent(world, f"http://127.0.0.1:{free_port()}/v1", budget=PRICE_ATOMIC)
    assert report.bought == []
    assert all("the model gave no usable answer" in s.reason for s in report.skipped)
    assert report.answer.startswith("(no answer: the model gave no usable answer")
    assert world.open_reservations() == []
