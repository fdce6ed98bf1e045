"""Against a real vLLM (CPU, the tiny random model): structured decisions, forced tool calls, prices and charges.

One server per session (the ``vllm`` fixture, started by ``farthing inference
serve``). The model's weights are random, so no test reads what it says:
they assert that answers fit their schemas, that tool calls name the tool that
was forced, that the gateway counts prompts exactly as vLLM does (its
``usage``), and what was paid and booked.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field

from farthing.inference import (
    BuyDecision,
    Gateway,
    InferenceSettings,
    aclose_chat_model,
    astructured_answer,
    build_tiny_model,
    chat_model,
    close_chat_model,
    response_format,
    sample_metrics,
    structured_answer,
)
from farthing.paywall.wire import unb64_json
from tests import zygote
from tests.conftest import VLLM_PYTHON, VllmProcess, clean_env
from tests.inference.conftest import PaidEnv, client_for

pytestmark = [pytest.mark.vllm, pytest.mark.anyio]

# Every answer here is bounded (max_length, ge/le), so grammar-constrained
# decoding always ends; the tiny model spends about one token per character.
ANSWER_TOKENS = 400


def settings(vllm: VllmProcess, **overrides: Any) -> InferenceSettings:
    values: dict[str, Any] = {
        "upstream_url": vllm.base_url,
        "request_timeout_s": 120.0,
        "max_tokens": ANSWER_TOKENS,
        "max_tokens_max": ANSWER_TOKENS,
        "upstream_timeout_s": 120.0,
        "metrics_refresh_s": 0.0,
    }
    values.update(overrides)
    return InferenceSettings(**values)


def article_prompt(index: int) -> list[Any]:
    return [
        SystemMessage("You buy articles for a research task within a budget."),
        HumanMessage(f"Article {index}: 'The farthing, a history'. Price 0.01 USDC. Buy or skip?"),
    ]


class FetchArticle(BaseModel):
    """Fetch an article by its URL, paying at most max_price_atomic."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=60)
    max_price_atomic: int = Field(ge=0, le=1_000_000)


class CheckBudget(BaseModel):
    """Report what is left of the task's budget."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["task", "day"]


def test_serve_announced_a_healthy_server(vllm: VllmProcess) -> None:
    assert httpx.get(f"{vllm.root_url}/health", timeout=10).status_code == 200
    models = httpx.get(f"{vllm.base_url}/models", timeout=10).json()["data"]
    assert [(m["id"], m["max_model_len"]) for m in models] == [("tiny", 1024)]


@pytest.fixture
def make_chat(vllm: VllmProcess) -> Iterator[Callable[..., ChatOpenAI]]:
    """``chat_model`` for the session's server; every model made is closed afterwards."""
    made: list[ChatOpenAI] = []

    def make(**options: Any) -> ChatOpenAI:
        llm = chat_model(vllm.base_url, model=vllm.model, settings=settings(vllm), **options)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        close_chat_model(llm)


def test_buy_or_skip_comes_back_schema_valid(make_chat: Callable[..., ChatOpenAI]) -> None:
    llm = make_chat()
    for index in range(5):
        decision = structured_answer(llm, article_prompt(index), BuyDecision)
        assert isinstance(
            decision, BuyDecision
        )  # validated: decision, 0-10 relevance, bounded reason
    # sampled, not greedy, still fits
    hot = make_chat(temperature=1.0)
    for index in range(3):
        assert isinstance(structured_answer(hot, article_prompt(index), BuyDecision), BuyDecision)


async def test_buy_or_skip_async(vllm: VllmProcess) -> None:
    llm = chat_model(vllm.base_url, model=vllm.model, settings=settings(vllm))
    try:
        assert isinstance(
            await astructured_answer(llm, article_prompt(7), BuyDecision), BuyDecision
        )
    finally:
        await aclose_chat_model(llm)


def test_a_forced_tool_call_names_its_tool_and_fits_its_schema(
    make_chat: Callable[..., ChatOpenAI],
) -> None:
    llm = make_chat()
    for forced, schema in (("FetchArticle", FetchArticle), ("CheckBudget", CheckBudget)):
        bound = llm.bind_tools([FetchArticle, CheckBudget], tool_choice=forced, strict=True)
        message = bound.invoke(article_prompt(1))
        assert message.invalid_tool_calls == []  # type: ignore[attr-defined]
        calls = message.tool_calls  # type: ignore[attr-defined]
        assert [call["name"] for call in calls] == [forced]
        schema.model_validate(calls[0]["args"])


def test_live_metrics_count_the_tokens_served(vllm: VllmProcess) -> None:
    before = sample_metrics(httpx.get(f"{vllm.root_url}/metrics", timeout=10).text, at_ms=0)
    body = {"model": vllm.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    usage = httpx.post(f"{vllm.base_url}/chat/completions", json=body, timeout=60).json()["usage"]
    after = sample_metrics(httpx.get(f"{vllm.root_url}/metrics", timeout=10).text, at_ms=1)
    assert after.prompt_tokens_total - before.prompt_tokens_total == usage["prompt_tokens"]
    assert (
        after.generation_tokens_total - before.generation_tokens_total == usage["completion_tokens"]
    )
    assert after.requests_waiting == 0


async def test_the_gateway_counts_prompts_as_vllm_does(vllm: VllmProcess) -> None:
    app = Gateway(settings(vllm))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "FetchArticle",
                "description": "Fetch an article.",
                "parameters": FetchArticle.model_json_schema(),
            },
        }
    ]
    bodies = [
        {
            "model": vllm.model,
            "messages": [{"role": "user", "content": "How much is a farthing?"}],
            "max_tokens": 8,
        },
        {
            "model": vllm.model,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Fetch it."},
            ],
            "tools": tools,
            "max_tokens": 8,
        },
    ]
    async with client_for(app) as client:
        for body in bodies:
            quote = (await client.post("/v1/price", json=body)).json()
            answer = await client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            usage = answer.json()["usage"]
            assert quote["prompt_tokens"] == usage["prompt_tokens"]
            assert usage["completion_tokens"] <= quote["max_tokens"] == 8
            tokens = usage["prompt_tokens"] + 8
            assert int(quote["amount"]) == max(1, -(-tokens * quote["price_per_1k_atomic"] // 1000))
        sheet = (await client.get("/v1/price")).json()
    assert sheet["metrics_error"] is None
    await app.aclose()


async def test_the_gateway_refuses_what_vllm_cannot_serve(vllm: VllmProcess) -> None:
    app = Gateway(settings(vllm, max_tokens_max=1000))
    long_prompt = " ".join(["farthing"] * 900)
    async with client_for(app) as client:
        unknown = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
        )
        over = await client.post(
            "/v1/chat/completions",
            json={
                "model": vllm.model,
                "messages": [{"role": "user", "content": long_prompt}],
                "max_tokens": 500,
            },
        )
        too_many = await client.post(
            "/v1/chat/completions",
            json={
                "model": vllm.model,
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 1001,
            },
        )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
    assert (over.status_code, over.json()["error"]["code"]) == (400, "context_length_exceeded")
    assert "1024" in over.json()["error"]["message"]
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (
        400,
        "max_tokens_over_limit",
    )
    await app.aclose()


async def test_a_paying_client_buys_a_structured_decision(
    vllm: VllmProcess, paid_env: PaidEnv
) -> None:
    app = paid_env.gateway(settings(vllm))
    body = {
        "model": vllm.model,
        "messages": [{"role": "user", "content": "Article 3 costs 0.01 USDC. Buy or skip?"}],
        "max_tokens": 300,
        "response_format": response_format(BuyDecision),
    }
    payer = paid_env.payer.address
    before = paid_env.balance(payer)
    async with client_for(app) as client:
        challenge = await client.post("/v1/chat/completions", json=body)
        assert challenge.status_code == 402
        header, amount = paid_env.pay(challenge)
        paid = await client.post(
            "/v1/chat/completions", json=body, headers={"payment-signature": header}
        )
    assert paid.status_code == 200, paid.text
    assert unb64_json(paid.headers["payment-response"])["success"] is True
    answer = paid.json()
    BuyDecision.model_validate_json(answer["choices"][0]["message"]["content"])
    tokens = answer["usage"]["prompt_tokens"] + 300
    assert int(paid.headers["x-farthing-tokens-priced"]) == tokens
    assert paid_env.balance(payer) == before - amount
    assert paid_env.balance(paid_env.merchant) == amount
    assert paid_env.revenue() == (amount, 1)
    await app.aclose()


def test_price_command_reads_a_live_server(vllm: VllmProcess, tmp_path: Path) -> None:
    proc = zygote.run_process(
        [
            sys.executable,
            "-m",
            "farthing",
            "inference",
            "price",
            "--upstream",
            vllm.base_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(FARTHING_DATA_DIR=str(tmp_path)),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["metrics_error"] is None
    assert report["requests_waiting"] == 0
    assert isinstance(report["price_per_1k_atomic"], int)


def test_the_model_build_is_reused(tiny_model: Path) -> None:
    started = time.monotonic()
    assert build_tiny_model(tiny_model, python=VLLM_PYTHON) == tiny_model
    assert time.monotonic() - started < 5, "an up-to-date build was rebuilt"
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in tiny_model.iterdir()
    }
