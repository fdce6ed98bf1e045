"""Anyone who can reach ``/mcp`` (the site's, or ``inference gateway --mcp``'s) gets a 500 from the MCP server by sending a body that is not UTF-8, or a JSON string holding a lone surrogate escape (``"\\ud800"``), as the id or anywhere else.

Found from outside against ``farthing paywall serve`` with ``mcp = true``:
the mount bounded the body's size and depth, then handed the bytes to the
``mcp`` package, whose transport answered ``500`` with ``-32603`` ("Error
handling POST request") for invalid UTF-8 and for a lone surrogate in the
request id. Both are the caller's mistake: the mount now parses the body with
``farthing.web.loads_bounded`` first and answers 400 with the reason. Here
the real ``McpMount`` in front of a real ``mcp`` low-level server with one
tool, over ``httpx.ASGITransport``; a good call still works.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp.server.lowlevel import Server
from mcp.types import TextContent, Tool

from farthing.paywall.mcp.mount import McpMount

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def _not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _mount() -> McpMount:
    server: Server[Any, Any] = Server("attack")

    @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
    async def list_tools() -> list[Tool]:
        return [Tool(name="echo", description="echo", inputSchema={"type": "object"})]

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[TextContent]:
        return [TextContent(type="text", text=repr(arguments))]

    return McpMount(_not_found, server)


def _post(body: bytes) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_mount())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.post("/mcp", headers=HEADERS, content=body)

    return asyncio.run(go())


CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
BODIES = {
    "invalid-utf8": (CALL + b'{"a":"\xff\xfe"}}}', "invalid_encoding"),
    "lone-surrogate-id": (
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"tools/list"}',
        "invalid_text",
    ),
    "lone-surrogate-argument": (CALL + b'{"a":"\\udfff"}}}', "invalid_text"),
    "nan-id": (b'{"jsonrpc":"2.0","id":NaN,"method":"tools/list"}', "invalid_json"),
}


@pytest.mark.parametrize(("body", "reason"), list(BODIES.values()), ids=list(BODIES))
def test_a_body_that_is_not_json_text_is_a_400_not_a_500(body: bytes, reason: str) -> None:
    answer = _post(body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == reason


def test_a_good_call_still_answers() -> None:
    answer = _post(
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call",'
        b'"params":{"name":"echo","arguments":{"a":"\\u00e9"}}}'
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "{'a': '\u00e9'}"
