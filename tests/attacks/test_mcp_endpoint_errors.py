"""A paid endpoint offered as an MCP tool (``inference gateway --mcp``'s ``chat``) that answers an error hands its caller a Python ``repr`` of the error object as the result's ``error`` code, and an error body nesting past Python's recursion limit raises out of the tool.

Found from outside against ``farthing inference gateway --mcp``: a chat
call the gateway refused (no model, ``max_tokens`` over its limit) came back
with ``structuredContent.error`` = ``"{'message': ..., 'type': ..., 'code':
...}"``, not a code a client can branch on. The tool result now names the
error's ``code`` (or ``type``) when the body is OpenAI's ``{"error":
{...}}``, a short string error as it is, and ``http_<status>`` otherwise (a
page of text or an object); the body itself stays in the message. A body
that nests 100,000 deep no longer raises ``RecursionError``. Here the real
``endpoint_server`` and ``McpMount`` over a small Starlette app answering
those bodies, through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.paywall.mcp.endpoints import EndpointTool, endpoint_server
from farthing.paywall.mcp.mount import McpMount

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
ANSWERS: dict[str, Response] = {
    "openai": JSONResponse(
        {"error": {"message": "name a model", "type": "invalid_request_error", "code": "no_model"}},
        status_code=400,
    ),
    "type-only": JSONResponse({"error": {"type": "invalid_request_error"}}, status_code=400),
    "short": JSONResponse({"error": "rate_limited"}, status_code=429),
    "long": JSONResponse({"error": "x " * 500}, status_code=400),
    "object-code": JSONResponse({"error": {"code": {"nested": 1}}}, status_code=400),
    "deep": Response(b"[" * 100_000 + b"]" * 100_000, status_code=500),
}


def _app() -> McpMount:
    async def answer(request: Request) -> Response:
        return ANSWERS[(await request.json())["case"]]

    site = Starlette(routes=[Route("/v1/answer", answer, methods=["POST"])])
    tool = EndpointTool(
        name="answer", description="answers a case", input_schema={"type": "object"},
        path="/v1/answer",
    )  # fmt: skip
    return McpMount(site, endpoint_server(site, [tool]))


def _call(case: str) -> Any:
    async def go() -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "answer", "arguments": {"case": case}}}  # fmt: skip
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.post("/mcp", headers=HEADERS, json=body)

    answer = asyncio.run(go())
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("openai", "no_model"),
        ("type-only", "invalid_request_error"),
        ("short", "rate_limited"),
        ("long", "http_400"),
        ("object-code", "http_400"),
        ("deep", "http_500"),
    ],
)
def test_an_endpoint_error_is_a_short_code(case: str, reason: str) -> None:
    result = _call(case)
    assert result["isError"] is True
    assert result["structuredContent"]["error"] == reason
