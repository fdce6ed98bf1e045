"""What the paid gateway adds to a chat completion, streamed and metered too, and how fast prices are computed.

Three measurements, one after the other:

- ``direct``: chat completions sent straight to the upstream;
- ``gateway``: the same requests through ``farthing.inference.Gateway`` (free
  mode: no chain), which validates the body, counts the prompt with the
  upstream's ``/tokenize``, prices it from the metrics window, forwards it and
  adds the price headers. Every request is distinct, so no held quote is
  reused and each call pays for a real ``/tokenize``.

The upstream is a small in-process stand-in with vLLM's routes (so the numbers
are the gateway's own overhead), or a real server with ``--upstream URL
--model NAME``, e.g. ``farthing inference serve`` on the tiny model. The
price model itself is timed as ``price_sheet`` calls per second.

- ``stream``: streamed chat paid per token through ``batch-settlement``
  (``stream_metered.py``): the time to first token through the paid gateway
  against the upstream's own, alternating, over real sockets (goal: at most
  1.2 times the upstream's at the median, ``stream_ttft_ratio``), and the
  charge's exactness over the run (``stream_charge_error_atomic``, goal 0).
  The stand-in upstream waits ``--stub-first-token-ms`` before its first
  token, as a model's prefill does; a real vLLM is given with ``--upstream``.

The last line printed is one JSON object:
{"bench":"inference","direct_ms":…,"gateway_ms":…,"overhead_ms":…,"calls":…,"price_sheets_per_s":…,
"stream_calls":…,"stream_ttft_direct_ms":…,"stream_ttft_gateway_ms":…,"stream_ttft_ratio":…,
"stream_charged_atomic":…,"stream_charge_error_atomic":…}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio
import httpx
import servers
import stream_metered
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from farthing.inference import Gateway, InferenceSettings, Throughput, Upstream, price_sheet

CALLS_DEFAULT = 200
CALLS_MAX = 100_000
STREAM_CALLS_DEFAULT = 50
STUB_MODEL = "stub"
_METRICS = (
    'vllm:prompt_tokens_total{model_name="stub"} 0.0\n'
    'vllm:generation_tokens_total{model_name="stub"} 0.0\n'
    'vllm:num_requests_waiting{model_name="stub"} 0.0\n'
)


def stub_upstream() -> Starlette:
    """vLLM's routes with fixed answers: no model, so only the gateway is measured."""

    async def models(request: Request) -> Response:
        return JSONResponse({"data": [{"id": STUB_MODEL, "max_model_len": 4096}]})

    async def tokenize(request: Request) -> Response:
        body = await request.json()
        count = sum(len(str(m.get("content", ""))) for m in body["messages"])
        return JSONResponse({"count": count, "max_model_len": 4096})

    async def chat(request: Request) -> Response:
        body = await request.json()
        return JSONResponse(
            {
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(_METRICS)

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/metrics", metrics),
        ]
    )


async def timed_calls(
    client: httpx.AsyncClient, path: str, model: str, calls: int, tag: str
) -> list[float]:
    out = []
    for index in range(calls):
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"{tag} {index}"}],
            "max_tokens": 4,
        }
        started = time.perf_counter()
        response = await client.post(path, json=body)
        out.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(
                f"{tag} call {index} answered HTTP {response.status_code}: {response.text[:200]}"
            )
    return out


async def measure(upstream_url: str | None, model: str, calls: int) -> dict[str, Any]:
    settings = InferenceSettings(
        upstream_url=upstream_url or "http://stub",
        metrics_refresh_s=1.0,
        max_tokens_max=64,
        max_tokens_default=4,
    )
    transport = None if upstream_url else httpx.ASGITransport(app=stub_upstream())
    upstream = Upstream(
        settings.upstream_url,
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        quick_timeout_s=settings.metrics_timeout_s,
        transport=transport,
    )
    gateway = Gateway(settings, upstream=upstream)
    timeout = httpx.Timeout(120.0, connect=5.0)
    direct_transport = httpx.ASGITransport(app=stub_upstream()) if transport else None
    async with (
        httpx.AsyncClient(
            base_url=upstream.url, transport=direct_transport, timeout=timeout
        ) as direct,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="http://gw", timeout=timeout
        ) as via,
    ):
        await timed_calls(direct, "/v1/chat/completions", model, 5, "warm-direct")
        await timed_calls(via, "/v1/chat/completions", model, 5, "warm-gateway")
        direct_s = await timed_calls(direct, "/v1/chat/completions", model, calls, "direct")
        gateway_s = await timed_calls(via, "/v1/chat/completions", model, calls, "gateway")
    await gateway.aclose()
    return {
        "direct_ms": round(statistics.median(direct_s) * 1000, 3),
        "gateway_ms": round(statistics.median(gateway_s) * 1000, 3),
    }


def price_sheets_per_s(duration_s: float) -> float:
    settings = InferenceSettings()
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s:
        price_sheet(
            settings, throughput=Throughput(50_000 + count, 60_000), requests_waiting=count % 40
        )
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS_DEFAULT)
    parser.add_argument(
        "--upstream", help="A real vLLM base URL (default: an in-process stand-in)."
    )
    parser.add_argument("--model", default=STUB_MODEL, help="The upstream's model name.")
    parser.add_argument("--price-duration-s", type=float, default=1.0)
    parser.add_argument("--stream-calls", type=int, default=STREAM_CALLS_DEFAULT)
    parser.add_argument("--stub-first-token-ms", type=float, default=20.0)
    parser.add_argument("--stub-token-ms", type=float, default=2.0)
    args = parser.parse_args()
    if not 1 <= args.calls <= CALLS_MAX:
        parser.error(f"--calls must be 1 to {CALLS_MAX}")
    if not 1 <= args.stream_calls <= CALLS_MAX:
        parser.error(f"--stream-calls must be 1 to {CALLS_MAX}")
    if not (0 <= args.stub_first_token_ms <= 10_000 and 0 <= args.stub_token_ms <= 10_000):
        parser.error("--stub-first-token-ms and --stub-token-ms must be 0 to 10000")
    if args.upstream and args.model == STUB_MODEL:
        parser.error("name the upstream's model with --model")
    latency = anyio.run(measure, args.upstream, args.model, args.calls)
    rate = price_sheets_per_s(min(max(args.price_duration_s, 0.05), 30.0))
    streamed = anyio.run(
        stream_metered.measure_stream,
        __file__,
        args.upstream,
        args.model,
        args.stream_calls,
        args.stub_first_token_ms / 1000,
        args.stub_token_ms / 1000,
    )
    print(
        f"median call: direct {latency['direct_ms']} ms, through the gateway {latency['gateway_ms']} ms"
    )
    print(
        f"streamed, paid per token: time to first token {streamed['stream_ttft_gateway_ms']} ms "
        f"through the gateway, {streamed['stream_ttft_direct_ms']} ms direct "
        f"(x{streamed['stream_ttft_ratio']}); charges {streamed['stream_charge_error_atomic']} "
        "atomic units off"
    )
    print(f"price sheets: {rate:,.0f}/s")
    report = {
        "bench": "inference",
        **latency,
        "overhead_ms": round(latency["gateway_ms"] - latency["direct_ms"], 3),
        "calls": args.calls,
        "upstream": args.upstream or "stub",
        "price_sheets_per_s": round(rate),
        **streamed,
    }
    print(json.dumps(report, separators=(",", ":")))


def _serve(kind: str, *args: str) -> None:
    if kind != "stream-gateway":
        raise SystemExit(f"no server named {kind}")
    stream_metered.serve_gateway(*args)


if __name__ == "__main__":
    servers.serve_or_run(main, _serve)
