"""One MCP call through the HTTP edge's paywall core, in this process, and its tool result.

The paywall's rules live once, in ``PaywallMiddleware`` and its parts
(``farthing.paywall.edge``): canonical paths, prices, the free preview,
verify, the nonce claim that stops a replay, the handler run buffered,
settle only after it succeeded, the revenue books, receipts and sign-in,
batch-settlement channels. An MCP call is turned into the request the edge
already judges (never sent over a socket): the payment from ``_meta`` in
``PAYMENT-SIGNATURE``, a receipt as its cookie, a sign-in as its header.
:func:`exchange` runs it; what the edge answers becomes x402's tool-result
binding here:

- 402 → ``isError: true``, ``structuredContent`` = the ``PaymentRequired``
  (the ``PAYMENT-REQUIRED`` header, decoded), ``content[0].text`` = the same
  JSON, then the free preview as a second text; a refused settlement adds
  its settle response in ``_meta["x402/payment-response"]`` and nothing of
  the tool's output;
- a payment the edge cannot decode (its 400) → the same 402 result, its
  ``error`` the reason, so a client can pay again;
- the edge's 503 (payment in progress, settlement pending, an outage) → an
  error result with the reason and the pending settle response, if any;
- anything else is the content's own answer, handed back as :class:`Answer`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from mcp.types import CallToolResult, ContentBlock, TextContent

from farthing.paywall.edge.asgi import BodyTooLarge, header_of, run_buffered
from farthing.paywall.mcp.meta import PAYMENT_RESPONSE_META, dumps
from farthing.paywall.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    MalformedPayment,
    unb64_json,
)

__all__ = [
    "Answer",
    "InnerRequest",
    "error_result",
    "exchange",
    "failure_result",
    "request_host",
    "tool_result",
]

_PAYWALL_OUTAGES: Final = frozenset(
    {
        "payment_in_progress",
        "settlement_pending",
        "facilitator_unavailable",
        "payment_database_unavailable",
    }
)
_TEXT_CHARS_MAX: Final = 2048
_REASON: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class InnerRequest:
    """The request an MCP call stands for: what the edge routes, prices and serves."""

    path: str
    method: str = "POST"
    query: bytes = b""
    host: str = "localhost"
    scheme: str = "http"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""  # the request's own body (a tool's arguments as the endpoint takes them)
    body_bytes_max: int = 32 * 1024 * 1024
    scope_extra: dict[str, Any] = field(default_factory=dict)

    def scope(self, payment: str | None) -> dict[str, Any]:
        headers = [
            (b"host", self.host.encode("latin-1")),
            (b"accept", b"application/json"),
            *self.headers,
        ]
        if payment is not None:
            headers.append((b"payment-signature", payment.encode("ascii")))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": self.scheme,
            "path": self.path,
            "raw_path": self.path.encode("ascii"),
            "query_string": self.query,
            "root_path": "",
            "headers": headers,
            "client": None,
            "server": None,
            "extensions": {},
            **self.scope_extra,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """The edge's answer to a call that reached the content (or was refused by it)."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        return header_of(self.headers, name.lower().encode())

    def settlement(self) -> dict[str, Any] | None:
        """The decoded ``PAYMENT-RESPONSE`` of a paid answer."""
        value = self.header(PAYMENT_RESPONSE_HEADER)
        decoded = unb64_json(value) if value else None
        return decoded if isinstance(decoded, dict) else None

    def json(self) -> dict[str, Any]:
        try:
            decoded = json.loads(self.body)
        except (ValueError, RecursionError):  # the content's own body may nest past the limit
            return {}
        return decoded if isinstance(decoded, dict) else {}


async def exchange(
    app: Any, request: InnerRequest, payment: str | MalformedPayment | None
) -> Answer | CallToolResult:
    """Run ``request`` through the paywall ``app``: its :class:`Answer`, or the binding's error."""
    if isinstance(payment, MalformedPayment):
        return await _refused(app, request, payment.reason, payment.message)
    answer = await _ask(app, request, payment)
    if answer.status == 402 and answer.header(PAYMENT_REQUIRED_HEADER):
        return _payment_required(answer)
    if answer.status == 400 and payment is not None:
        body = answer.json()
        reason = str(body.get("error") or "invalid_payment_payload")
        return await _refused(app, request, reason, str(body.get("message") or reason))
    if answer.status == 503 and answer.json().get("error") in _PAYWALL_OUTAGES:
        return _unavailable(answer)
    return answer


def tool_result(
    content: Sequence[ContentBlock],
    *,
    structured: dict[str, Any] | None = None,
    is_error: bool = False,
    meta: dict[str, Any] | None = None,
) -> CallToolResult:
    """A ``CallToolResult`` with ``_meta`` (pydantic's alias, passed by name)."""
    fields: dict[str, Any] = {"_meta": meta} if meta else {}
    return CallToolResult(
        content=list(content), structuredContent=structured, isError=is_error, **fields
    )


def error_result(
    reason: str, message: str, *, meta: dict[str, Any] | None = None
) -> CallToolResult:
    """An error result that is not a payment request: a reason and a sentence."""
    body = {"error": reason, "message": message}
    return tool_result(
        [TextContent(type="text", text=dumps(body))], structured=body, is_error=True, meta=meta
    )


def failure_result(answer: Answer) -> CallToolResult:
    """A non-2xx answer of the content itself (not of the paywall) as an error result."""
    error = answer.json().get("error")
    if isinstance(error, Mapping):  # OpenAI's {"error": {"code", "type", "message"}}
        error = error.get("code") or error.get("type")
    # A short code, never a Python repr of an object or a page of text.
    reason = (
        error if isinstance(error, str) and _REASON.fullmatch(error) else f"http_{answer.status}"
    )
    detail = answer.body[:_TEXT_CHARS_MAX].decode("utf-8", "replace")
    return error_result(reason, f"The server answered {answer.status}: {detail}")


def request_host(context: Any) -> str:
    """The Host of the MCP request (``HostGuard`` admitted it), else localhost."""
    request = getattr(context, "request", None)
    headers = getattr(request, "headers", None)
    host = headers.get("host") if headers is not None else None
    return host if isinstance(host, str) and host else "localhost"


async def _ask(app: Any, request: InnerRequest, payment: str | None) -> Answer:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await anyio.sleep_forever()  # no disconnect: the answer is awaited whole
        raise AssertionError("unreachable")  # pragma: no cover

    try:
        buffered = await run_buffered(
            app, request.scope(payment), receive, body_bytes_max=request.body_bytes_max
        )
    except BodyTooLarge:
        body = b'{"error":"response_too_large"}'
        return Answer(500, [(b"content-type", b"application/json")], body)
    return Answer(buffered.status, list(buffered.headers), bytes(buffered.body))


async def _refused(
    app: Any, request: InnerRequest, reason: str, message: str
) -> Answer | CallToolResult:
    """A payment the edge cannot read: the current terms again, with why it was refused."""
    answer = await _ask(app, request, None)
    if answer.status == 402 and answer.header(PAYMENT_REQUIRED_HEADER):
        return _payment_required(answer, error=reason)
    return error_result(reason, message)


def _payment_required(answer: Answer, *, error: str | None = None) -> CallToolResult:
    challenge = unb64_json(answer.header(PAYMENT_REQUIRED_HEADER) or "")
    if not isinstance(challenge, dict):
        return error_result("payment_required", "The paywall answered an unreadable challenge.")
    if error is not None or not challenge.get("error"):
        challenge["error"] = error or "payment_required"
    content: list[ContentBlock] = [TextContent(type="text", text=dumps(challenge))]
    preview = answer.json().get("preview")
    if isinstance(preview, str) and preview:
        content.append(TextContent(type="text", text=preview))
    settled = answer.settlement()
    meta = {PAYMENT_RESPONSE_META: settled} if settled is not None else None
    return tool_result(content, structured=challenge, is_error=True, meta=meta)


def _unavailable(answer: Answer) -> CallToolResult:
    body = answer.json()
    reason = str(body.get("error"))
    message = str(body.get("message") or reason)[:_TEXT_CHARS_MAX]
    retry = answer.header("retry-after")
    if retry:
        message = f"{message} (retry in {retry} s)"
    settled = answer.settlement()
    meta = {PAYMENT_RESPONSE_META: settled} if settled is not None else None
    return error_result(reason, message, meta=meta)
