"""A stand-in for vLLM's OpenAI server: the same routes and answer shapes, no model.

The fast gateway tests drive it in-process (``httpx.ASGITransport``) or as a
real process (``python tests/inference/fake_vllm.py --port P --mode die``),
which can then die for real in the middle of a request. Its ``/tokenize``
counts one token per character of message content plus fixed framing, so a
test knows the prompt size it sends; ``/metrics`` serves the Prometheus text
captured from vLLM 0.32.0 (CPU), with the counters it is told.

With ``--mode stuck-stop`` it is a process tree that will not stop on
SIGTERM, as a vLLM whose engine core hangs: an "engine" child ignores SIGTERM,
and the API server, told to stop, stops serving and then waits for that
engine forever. ``test_stop.py`` runs it under ``farthing inference serve``.

A chat with ``"stream": true`` is answered as vLLM streams it: server-sent
events, a role chunk, one chunk per completion token (``stream_tokens``, at
most ``max_tokens``, ``stream_delay_s`` apart), a finish chunk, the usage
chunk when ``stream_options.include_usage`` asks, and ``data: [DONE]``; with
``continuous_usage_stats`` every chunk carries the usage so far. Its
``stream_mode`` misbehaves on purpose: ``json`` answers one JSON body
instead of a stream, ``forge`` also sends named events,
comments and text that look like the gateway's charge event, ``no_usage``
sends no usage at all, ``huge_usage`` claims a million completion tokens at
the end, ``cut`` stops after ``cut_after`` tokens without ``[DONE]``.

The real thing is tested too: ``test_vllm.py`` runs the same checks against a
real vLLM serving the tiny model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "fake-model"
CONTEXT = 256
FRAMING_TOKENS = 3  # per message, like a chat template's role markers
GENERATION_PROMPT_TOKENS = 2
METRICS_SAMPLE = Path(__file__).with_name("data") / "vllm-0.32.0-cpu-metrics.txt"


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """What the fake's /tokenize answers for these messages."""
    return (
        sum(len(str(m.get("content") or "")) + FRAMING_TOKENS for m in messages)
        + GENERATION_PROMPT_TOKENS
    )


@dataclass
class FakeVllm:
    """The fake's behaviour, changeable while it runs."""

    mode: str = "ok"  # ok | error | hang | die
    prompt_tokens_total: int = 1022
    generation_tokens_total: int = 1083
    requests_waiting: int = 0
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    stream_tokens: int = 5
    stream_delay_s: float = 0.0
    stream_mode: str = "ok"  # ok | json | forge | no_usage | huge_usage | cut
    cut_after: int = 2
    streamed_tokens: list[int] = field(default_factory=list)  # tokens yielded, per stream

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._health),
                Route("/v1/models", self._models),
                Route("/tokenize", self._tokenize, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/metrics", self._metrics),
            ]
        )

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": CONTEXT}]}
        )

    async def _tokenize(self, request: Request) -> Response:
        body = await request.json()
        if body.get("model") != MODEL:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _error(400, "messages must be a list of objects", "BadRequestError")
        return JSONResponse(
            {
                "count": prompt_tokens(messages),
                "max_model_len": CONTEXT,
                "tokens": [],
                "token_strs": None,
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.chat_bodies.append(body)
        if self.mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)  # a real death, mid-request
        if self.mode == "hang":
            await anyio.sleep(3600)
        if self.mode == "error":
            return _error(500, "engine crashed", "InternalServerError")
        if body.get("stream") and self.stream_mode != "json":
            return StreamingResponse(self._stream(body), media_type="text/event-stream")
        prompt = prompt_tokens(body["messages"])
        completion = min(5, body.get("max_tokens") or 5)
        self.prompt_tokens_total += prompt
        self.generation_tokens_total += completion
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": '{"ok":true}'},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        prompt = prompt_tokens(body["messages"])
        tokens = min(self.stream_tokens, body.get("max_tokens") or self.stream_tokens)
        options = body.get("stream_options") or {}
        continuous = bool(options.get("continuous_usage_stats"))
        mode = self.stream_mode
        count = len(self.streamed_tokens)
        self.streamed_tokens.append(0)
        base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"]}  # fmt: skip

        def event(choices: list[Any], completion: int | None, **extra: Any) -> bytes:
            chunk: dict[str, Any] = {**base, "choices": choices, **extra}
            if continuous and completion is not None and mode != "no_usage":
                chunk["usage"] = _usage(prompt, completion)
            return f"data: {json.dumps(chunk)}\n\n".encode()

        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}}], 0)
        for n in range(1, tokens + 1):
            if self.stream_delay_s:
                await anyio.sleep(self.stream_delay_s)
            if mode == "cut" and n > self.cut_after:
                return
            if mode == "forge":
                forged = {"success": True, "amount": "1", "extra": {"chargedAmount": "1"}}
                yield (
                    b": a comment\nevent: payment-response\ndata: "
                    + json.dumps({"choices": [], "payment_response": forged}).encode()
                    + b"\n\n"
                )
            text = "event: payment-response\ndata: [DONE]\n\n" if mode == "forge" else "tok "
            yield event([{"index": 0, "delta": {"content": text}}], n)
            self.streamed_tokens[count] = n
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}], tokens)
        self.prompt_tokens_total += prompt
        self.generation_tokens_total += tokens
        if options.get("include_usage") and mode != "no_usage":
            usage = _usage(prompt, 10**6 if mode == "huge_usage" else tokens)
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def _metrics(self, request: Request) -> Response:
        text = METRICS_SAMPLE.read_text()
        values = {
            "vllm:prompt_tokens_total": self.prompt_tokens_total,
            "vllm:generation_tokens_total": self.generation_tokens_total,
            "vllm:num_requests_waiting": self.requests_waiting,
        }
        for name, value in values.items():
            text = re.sub(
                rf"^({re.escape(name)}\{{[^}}]*\}}) \S+$",
                rf"\g<1> {value}.0",
                text,
                flags=re.MULTILINE,
            )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(status: int, message: str, kind: str) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--stream-tokens", type=int, default=5)
    parser.add_argument("--stream-delay-s", type=float, default=0.0)
    args = parser.parse_args()
    if args.mode == "stuck-stop":
        serve_with_stuck_engine(args.port)
        return
    fake = FakeVllm(
        mode=args.mode, stream_tokens=args.stream_tokens, stream_delay_s=args.stream_delay_s
    )
    print(json.dumps({"port": args.port}), flush=True)
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning")


# The engine says when it ignores SIGTERM, so the server is only healthy once
# the tree is as stubborn as it will ever be.
_STUCK_ENGINE = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('armed', flush=True)\n"
    "time.sleep(3600)\n"
)


def serve_with_stuck_engine(port: int) -> None:
    """Serve like vLLM, with an engine child that ignores SIGTERM and a server that waits for it."""
    import uvicorn

    engine = subprocess.Popen(
        [sys.executable, "-c", _STUCK_ENGINE], stdout=subprocess.PIPE, text=True
    )
    assert engine.stdout is not None
    engine.stdout.readline()
    print(f"engine core {engine.pid} ignores SIGTERM", flush=True)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; taking
    # it here keeps the server alive to wait for its engine, as vLLM's does.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(FakeVllm().app(), host="127.0.0.1", port=port, log_level="warning")
    print("API server stopped; waiting for the engine core", flush=True)
    engine.wait()


if __name__ == "__main__":
    sys.exit(main())
