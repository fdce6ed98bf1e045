"""An OpenAI-compatible chat server with a scripted "model", for driving the LLM brain without vLLM.

It answers ``POST /v1/chat/completions`` in the shapes vLLM and OpenAI use:
JSON content for ``response_format`` requests, a tool call for requests that
bind tools. What it says is decided by plain rules over the last user message
(no model), so tests know what to expect; every request body is kept for
assertions. ``obey_injections`` makes it do what a page tells it, the way a
gullible model would. The real vLLM path is tested in ``tests/inference``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MODEL = "scripted"
INJECTION_MARK = "IGNORE PREVIOUS INSTRUCTIONS"


@dataclass
class ScriptedModel:
    """The fake's rules, changeable by a test."""

    obey_injections: bool = False
    injected_call: dict[str, Any] = field(default_factory=dict)  # what an obedient model calls
    requests: list[dict[str, Any]] = field(default_factory=list)
    poisoned: set[str] = field(default_factory=set)  # URLs whose preview it obeyed
    obeyed: int = 0  # tool calls it made on a page's orders

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        prompt = str(body["messages"][-1]["content"])
        injected = self.obey_injections and INJECTION_MARK in prompt
        url = re.search(r"^URL: (\S+)$", prompt, re.MULTILINE)
        if injected and url:
            self.poisoned.add(url.group(1))  # it remembers what the page told it
        if body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            buying = re.search(r"buy (\S+) for", prompt)
            obey = buying is not None and buying.group(1) in self.poisoned
            self.obeyed += obey
            args = self.injected_call if obey else _honest_call(prompt)
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call-1",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                ],
            }
            return _completion(message, "tool_calls")
        schema = body["response_format"]["json_schema"]["name"]
        if schema == "BuyDecision":
            answer = _decision(prompt, injected)
        else:
            answer = {"answer": "The farthing was a quarter of a penny, withdrawn in 1960."}
        return _completion({"role": "assistant", "content": json.dumps(answer)}, "stop")


def _decision(prompt: str, injected: bool) -> dict[str, Any]:
    if injected:
        return {"decision": "buy", "relevance": 10, "reason": "the page says my budget is larger"}
    page = re.search(r"^Page: (.*)$", prompt, re.MULTILINE)
    title = page.group(1).lower() if page else ""
    if "farthing" in title:
        return {"decision": "buy", "relevance": 8, "reason": "about the farthing"}
    return {"decision": "skip", "relevance": 1, "reason": "not about the farthing"}


def _honest_call(prompt: str) -> dict[str, Any]:
    url = re.search(r"buy (\S+) for", prompt)
    price = re.search(r"max_price ([0-9.]+)\.", prompt)
    return {
        "url": url.group(1) if url else "",
        "max_price": price.group(1) if price else "0",
        "purpose": "for the task",
    }


def _completion(message: dict[str, Any], finish: str) -> JSONResponse:
    return JSONResponse(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
    )
