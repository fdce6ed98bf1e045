"""The gateway proxies, quotes and refuses like an OpenAI server, and never hangs past its timeout.

It runs in front of the fake vLLM (``fake_vllm.py``): in-process through
``httpx.ASGITransport`` for the routes and refusals, and as a real process
for the failures that need one (nothing listening, an answer that never
comes, a server killed mid-request). Charging is in ``test_gateway_paid.py``;
the same checks against the real vLLM are in ``test_vllm.py``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

from farthing.inference import Gateway
from tests.conftest import free_port
from tests.inference.conftest import client_for, fake_upstream, fake_vllm_process, fast_settings
from tests.inference.fake_vllm import CONTEXT, MODEL, FakeVllm, prompt_tokens

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hello"}]


def chat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 10}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def gateway(fake: FakeVllm, **overrides: Any) -> Gateway:
    settings = fast_settings(**overrides)
    return Gateway(settings, upstream=fake_upstream(fake, settings))


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "code"}, body
    code: str = body["error"]["code"]
    return code


async def test_models_pass_through(fake_vllm: FakeVllm) -> None:
    async with client_for(gateway(fake_vllm)) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [MODEL]


async def test_a_free_gateway_forwards_the_paid_limit_and_reports_the_price(
    fake_vllm: FakeVllm,
) -> None:
    app = gateway(fake_vllm)
    async with client_for(app) as client:
        sheet = (await client.get("/v1/price")).json()
        response = await client.post(
            "/v1/chat/completions", json=chat(max_tokens=None, max_completion_tokens=12)
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == '{"ok":true}'
    tokens = prompt_tokens(MESSAGES) + 12
    per_1k = sheet["price_per_1k_atomic"]
    assert int(response.headers["x-farthing-tokens-priced"]) == tokens
    assert int(response.headers["x-farthing-price-atomic"]) == -(-tokens * per_1k // 1000)
    forwarded = fake_vllm.chat_bodies[-1]
    assert (forwarded["max_tokens"], forwarded["max_completion_tokens"]) == (12, 12)
    assert "x-farthing-quote" not in json.dumps(forwarded)


async def test_max_tokens_defaults_to_the_setting(fake_vllm: FakeVllm) -> None:
    async with client_for(gateway(fake_vllm, max_tokens_default=7)) as client:
        response = await client.post("/v1/price", json=chat(max_tokens=None))
    assert response.status_code == 200
    assert response.json()["max_tokens"] == 7
    assert response.json()["tokens"] == prompt_tokens(MESSAGES) + 7


async def test_price_sheet_is_measured_from_metrics(fake_vllm: FakeVllm) -> None:
    app = gateway(fake_vllm, tokens_measured_min=100)
    async with client_for(app) as client:
        first = (await client.get("/v1/price")).json()
        assert first["tokens_per_hour_source"] == "assumed"
        fake_vllm.prompt_tokens_total += 50_000
        fake_vllm.requests_waiting = 5
        await anyio.sleep(1.1)  # the window must span a second before it is trusted
        second = (await client.get("/v1/price")).json()
    assert second["tokens_per_hour_source"] == "measured"
    assert second["requests_waiting"] == 5
    assert Decimal(second["demand_factor"]) == Decimal("1.5")  # 1 + 5 × 0.10
    assert second["tokens_per_hour"] > 0
    assert all(not isinstance(v, float) for v in second.values())


async def test_a_quote_is_held_for_the_same_request(fake_vllm: FakeVllm) -> None:
    app = gateway(fake_vllm)
    async with client_for(app) as client:
        first = (await client.post("/v1/price", json=chat())).json()
        fake_vllm.requests_waiting = 20  # demand rises: new requests cost more …
        other = (await client.post("/v1/price", json=chat(max_tokens=11))).json()
        again = (await client.post("/v1/price", json=chat())).json()
    assert again["amount"] == first["amount"]  # … but a quoted request keeps its price
    assert other["price_per_1k_atomic"] > first["price_per_1k_atomic"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (chat(model="no-such-model"), 404, "model_not_found"),
        (chat(max_tokens=65), 400, "max_tokens_over_limit"),
        (chat(max_tokens=0), 400, "invalid_max_tokens"),
        (chat(max_tokens=True), 400, "invalid_max_tokens"),
        (chat(max_tokens=10, max_completion_tokens=11), 400, "max_tokens_conflict"),
        (
            chat(messages=[{"role": "user", "content": "x" * (CONTEXT - 10)}]),
            400,
            "context_length_exceeded",
        ),
        (chat(stream="yes"), 400, "invalid_stream"),
        (chat(n=9), 400, "n_over_limit"),  # n is priced per sequence, up to a bound
        (chat(messages=[]), 400, "invalid_request"),
        (chat(messages=["not an object"]), 400, "invalid_request"),
        (chat(model=None), 400, "invalid_request"),
    ],
)
async def test_bad_requests_are_refused_before_the_upstream_runs(
    fake_vllm: FakeVllm, body: dict[str, Any], status: int, code: str
) -> None:
    async with client_for(gateway(fake_vllm)) as client:
        response = await client.post("/v1/chat/completions", json=body)
        quoted = await client.post("/v1/price", json=body)
    assert (response.status_code, error_code(response)) == (status, code)
    assert (quoted.status_code, error_code(quoted)) == (status, code)
    assert fake_vllm.chat_bodies == []


async def test_unreadable_and_oversized_bodies(fake_vllm: FakeVllm) -> None:
    async with client_for(gateway(fake_vllm, request_body_bytes_max=2048)) as client:
        garbage = await client.post("/v1/chat/completions", content=b"{not json")
        array = await client.post("/v1/chat/completions", json=[1, 2])
        huge = await client.post("/v1/chat/completions", content=b" " * 4096)
    assert (garbage.status_code, error_code(garbage)) == (400, "invalid_json")
    assert (array.status_code, error_code(array)) == (400, "invalid_json")
    assert (huge.status_code, error_code(huge)) == (413, "request_too_large")


async def test_a_forged_quote_header_is_dropped(fake_vllm: FakeVllm) -> None:
    async with client_for(gateway(fake_vllm)) as client:
        response = await client.post(
            "/v1/chat/completions", json=chat(max_tokens=65), headers={"x-farthing-quote": "forged"}
        )
    assert error_code(response) == "max_tokens_over_limit"


async def test_an_upstream_error_is_a_502(fake_vllm: FakeVllm) -> None:
    fake_vllm.mode = "error"
    async with client_for(gateway(fake_vllm)) as client:
        response = await client.post("/v1/chat/completions", json=chat())
    assert (response.status_code, error_code(response)) == (502, "upstream_error")
    assert "engine crashed" in response.json()["error"]["message"]


# ------------------------------------------------------------------ real processes


def real_gateway(url: str, **overrides: Any) -> Gateway:
    return Gateway(fast_settings(upstream_url=url, **overrides))


@pytest.fixture
def fake_process(request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The fake vLLM as a real server process in the mode the test names."""
    with fake_vllm_process(request.param) as running:
        yield running


async def test_nothing_listening_is_a_503_at_once() -> None:
    app = real_gateway(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=chat())
        models = await client.get("/v1/models")
        health = await client.get("/health")
        sheet = await client.get("/v1/price")
    assert (response.status_code, error_code(response)) == (503, "upstream_unavailable")
    assert (models.status_code, error_code(models)) == (503, "upstream_unavailable")
    assert health.status_code == 503
    # the price is still quoted, on the assumed throughput, saying why
    assert sheet.status_code == 200
    assert sheet.json()["tokens_per_hour_source"] == "assumed"
    assert "nothing answers" in sheet.json()["metrics_error"]
    assert time.monotonic() - started < 10
    await app.aclose()


@pytest.mark.parametrize("fake_process", ["hang"], indirect=True)
async def test_an_upstream_that_never_answers_is_a_504_within_the_timeout(
    fake_process: tuple[str, subprocess.Popen[str]],
) -> None:
    url, _ = fake_process
    app = real_gateway(url, upstream_timeout_s=1.0)
    started = time.monotonic()
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=chat())
    elapsed = time.monotonic() - started
    assert (response.status_code, error_code(response)) == (504, "upstream_timeout")
    assert "1 s" in response.json()["error"]["message"]
    assert elapsed < 1.0 + 3.0, f"took {elapsed:.1f} s against a 1 s timeout"
    await app.aclose()


@pytest.mark.parametrize("fake_process", ["die"], indirect=True)
async def test_an_upstream_killed_mid_request_is_a_502(
    fake_process: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = fake_process
    app = real_gateway(url)
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=chat())
        assert process.wait(timeout=10) == -9  # it really died, mid-request
        after = await client.post("/v1/chat/completions", json=chat(max_tokens=9))
    assert (response.status_code, error_code(response)) == (502, "upstream_failed")
    assert (after.status_code, error_code(after)) == (503, "upstream_unavailable")
    await app.aclose()
