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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
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
    args = parser.parse_args()
    if args.mode == "stuck-stop":
        serve_with_stuck_engine(args.port)
        return
    fake = FakeVllm(mode=args.mode)
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
