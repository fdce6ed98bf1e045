"""An HTTP endpoint already sold behind ``PaywallMiddleware``, offered as a paid MCP tool.

An app whose paid route is an HTTP endpoint (the inference gateway's
``POST /v1/chat/completions``) sells the same endpoint over MCP: each
:class:`EndpointTool` turns a tool call's arguments into the endpoint's JSON
body and runs it through the app in process
(``farthing.paywall.mcp.exchange``), with the payment from
``_meta["x402/payment"]``. Whatever the app does with the request (quote it,
meter it per token through a channel with ``Farthing-Charge``, refuse it) is
what happens to the call; the answer's JSON is the result's
``structuredContent`` and its text, the settle response in
``_meta["x402/payment-response"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp.server.lowlevel import Server
from mcp.types import CallToolResult, TextContent, Tool

from farthing.paywall.mcp.exchange import (
    Answer,
    InnerRequest,
    error_result,
    exchange,
    failure_result,
    request_host,
    tool_result,
)
from farthing.paywall.mcp.meta import PAYMENT_RESPONSE_META, meta_of, payment_header

__all__ = ["EndpointTool", "endpoint_server", "served_result"]


@dataclass(frozen=True, slots=True)
class EndpointTool:
    """A tool that is one JSON endpoint of the app: its arguments are the body."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    path: str
    method: str = "POST"
    response_body_bytes_max: int = 32 * 1024 * 1024
    annotations: Mapping[str, Any] = field(default_factory=dict)

    def tool(self) -> Tool:
        return Tool(
            name=self.name, description=self.description, inputSchema=dict(self.input_schema)
        )


def endpoint_server(
    app: Any, tools: Sequence[EndpointTool], *, name: str = "farthing"
) -> Server[Any, Any]:
    """An MCP server whose tools are ``app``'s paid endpoints."""
    server: Server[Any, Any] = Server(name)
    by_name = {tool.name: tool for tool in tools}

    @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
    async def list_tools() -> list[Tool]:
        return [tool.tool() for tool in tools]

    @server.call_tool(validate_input=True)  # type: ignore[untyped-decorator]
    async def call_tool(tool_name: str, arguments: dict[str, Any]) -> CallToolResult:
        endpoint = by_name.get(tool_name)
        if endpoint is None:
            return error_result("unknown_tool", f"No tool named {tool_name[:64]!r}.")
        context = server.request_context
        request = InnerRequest(
            path=endpoint.path,
            method=endpoint.method,
            host=request_host(context),
            headers=((b"content-type", b"application/json"),),
            body=json.dumps(arguments, separators=(",", ":")).encode(),
            body_bytes_max=endpoint.response_body_bytes_max,
        )
        outcome = await exchange(app, request, payment_header(meta_of(context)))
        if isinstance(outcome, CallToolResult):
            return outcome
        return served_result(outcome)

    return server


def served_result(answer: Answer, extra_meta: Mapping[str, Any] | None = None) -> CallToolResult:
    """A JSON endpoint's answer as a result: 2xx its JSON, anything else an error result."""
    if not 200 <= answer.status < 300:
        return failure_result(answer)
    meta: dict[str, Any] = dict(extra_meta or {})
    settled = answer.settlement()
    if settled is not None:
        meta[PAYMENT_RESPONSE_META] = settled
    text = answer.body.decode("utf-8", "replace")
    return tool_result(
        [TextContent(type="text", text=text)], structured=answer.json() or None, meta=meta
    )
