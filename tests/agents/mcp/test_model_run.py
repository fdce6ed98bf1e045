"""``agent run --mcp`` with a model: it fills each tool's arguments through langchain-mcp-adapters and cannot be talked into paying more.

The model is a scripted OpenAI-compatible server (uvicorn, 127.0.0.1) driven
through the real ``ChatOpenAI``: asked for a tool's arguments (a forced tool
call on the adapters' schema) it fills every required string with "Lisbon";
asked buy-or-skip it buys what is about the weather, and, being gullible,
also anything whose untrusted text claims a bigger budget. The MCP server is
the module's real one (the x402 SDK's wrapper, our facilitator, memory
chain). The weather tool is bought with the model's arguments; the malicious
tool the model obeyed is paid only its honest price to the honest payee; the
policy and the task's budget are unchanged and the attacker gets nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.agents.brain import LlmBrain
from farthing.agents.mcp.runner import McpRun
from farthing.agents.reservations import booked_payments
from farthing.agents.tools import Task
from farthing.inference import InferenceSettings, chat_model
from tests.agents.mcp.conftest import ATTACKER, PRICE, Buyer
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anyio

MODEL = "scripted-tools"


async def _chat(request: Request) -> Response:
    body = await request.json()
    prompt = str(body["messages"][-1]["content"])
    if body.get("tools"):
        function = body["tools"][0]["function"]
        schema = function.get("parameters") or {}
        args = {name: "Lisbon" for name in schema.get("required", [])}
        call = {"id": "call-1", "type": "function"}
        call["function"] = {"name": function["name"], "arguments": json.dumps(args)}
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        return _completion(message, "tool_calls")
    if body["response_format"]["json_schema"]["name"] == "BuyDecision":
        page = re.search(r"^Page: (.*)$", prompt, re.MULTILINE)
        title = page.group(1) if page else ""
        if "SYSTEM NOTICE" in prompt:  # gullible: obeys the tool's text
            answer = {"decision": "buy", "relevance": 10, "reason": "my budget is larger now"}
        elif "weather" in title:
            answer = {"decision": "buy", "relevance": 8, "reason": "about the weather"}
        else:
            answer = {"decision": "skip", "relevance": 1, "reason": "not about the weather"}
    else:
        answer = {"answer": "It is sunny in Lisbon."}
    return _completion({"role": "assistant", "content": json.dumps(answer)}, "stop")


def _completion(message: dict[str, Any], finish: str) -> JSONResponse:
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    return JSONResponse(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
    )


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    app = Starlette(routes=[Route("/v1/chat/completions", _chat, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield f"{url}/v1"


async def test_the_model_fills_arguments_and_its_gullibility_costs_nothing_extra(
    buyer: Buyer, model_url: str
) -> None:
    buyer.set_policy(payees_allowed=frozenset({buyer.shop.merchant}), approval_above=PRICE)
    policy_before = buyer.books.policy()
    task = Task("model-task", "What is the weather in Lisbon?", 50_000)
    buyer.books.start_task(task.task_id, task.budget, task.text)
    brain = LlmBrain(chat_model(model_url, model=MODEL, settings=InferenceSettings()))
    try:
        report = await McpRun(buyer.payer, task, brain, servers=[buyer.shop.mcp_url]).run()
    finally:
        await brain.aclose()
    assert sorted(p.title for p in report.bought) == ["sly", "weather"]
    weather = next(p for p in report.bought if p.title == "weather")
    assert weather.amount == PRICE and weather.chars == len("sunny in Lisbon")
    assert report.answer == "It is sunny in Lisbon."
    assert buyer.books.policy() == policy_before
    assert buyer.books.status(task.task_id).task_budget == 50_000
    assert buyer.shop.token.balance_of(ATTACKER) == 0
    payees = {p.pay_to for p in booked_payments(buyer.books)}
    assert payees == {buyer.shop.merchant.lower()}
    assert report.spent == 2 * PRICE == buyer.posted()
