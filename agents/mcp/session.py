"""The paying MCP client: a tool call that pays its 402 under the agent's policy, approvals and books.

::

    async with open_mcp(url, payer.settings) as session:
        paying = PayingSession(session, payer, url)
        call = await paying.call_tool("fetch", {"path": "/posts/x"}, max_price=20_000, task_id="t-1")
        call.outcome              # PaymentOutcome: free / paid / not_paid / refused / possible_spend

:meth:`PayingSession.call_tool` is the MCP twin of the HTTP client's
``PaymentAuth`` flow, and runs the very same steps of the same
:class:`~farthing.agents.payer.Payer`: the unpaid call; on a payment-required
result its terms (``farthing.agents.mcp.binding``) go to
:meth:`Payer.prepare <farthing.agents.payer.Payer.prepare>`, which checks
``max_price``, the host and payee lists, asks a person above the approval
threshold, **reserves** in the books and only then signs (``exact``, or a
``batch-settlement`` voucher through ``farthing.agents.channels``); the paid
call carries the payload in ``_meta["x402/payment"]``; and
:meth:`Payer.conclude <farthing.agents.payer.Payer.conclude>` books the answer:
posted on a successful ``x402/payment-response``, voided on a refusal the
chain confirms, otherwise left reserved as possible spend. A paid call that
gets no answer (a timeout, a dropped connection) is possible spend too
(:meth:`Payer.after_error <farthing.agents.payer.Payer.after_error>`).

The paid call goes out through the session's own ``send_request`` rather
than ``call_tool``: ``call_tool`` raises on a result that breaks the tool's
declared output schema, and the receipt in that result must still be booked.

Nothing a tool says can change who is paid or how much: its description and
results are untrusted text; the payee, the asset and the price come from its
402 and are judged by the policy like any page's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import (
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    ClientRequest,
    RequestParams,
)

from farthing.agents.mcp.binding import (
    bought_resource,
    payment_meta,
    result_text,
    settlement_pending,
    tool_answer,
    tool_challenge,
    tool_resource,
)
from farthing.agents.outcome import PaymentOutcome
from farthing.agents.payer import Intent, Payer
from farthing.agents.settings import AgentSettings

__all__ = ["RESPONSE_BYTES_MAX", "PayingSession", "ToolCall", "open_mcp"]

# One MCP response (a tool's result, a tool list) read from the server at most.
RESPONSE_BYTES_MAX: Final = 4 * 1024 * 1024
_ARGUMENTS_BYTES_MAX: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What one tool call brought back: the result, what was paid, or why nothing was."""

    tool: str
    resource: str
    result: CallToolResult | None
    outcome: PaymentOutcome | None
    error: str | None = None  # the call failed before any payment question (unreachable, refused)

    @property
    def delivered(self) -> bool:
        """True when the tool's result came and was free or paid for certain."""
        return (
            self.result is not None
            and not self.result.isError
            and self.outcome is not None
            and self.outcome.status in ("free", "paid")
        )

    def text(self, chars_max: int) -> str:
        return "" if self.result is None else result_text(self.result, chars_max=chars_max)


class _Bounded(httpx.AsyncBaseTransport):
    """Refuses a response body past ``RESPONSE_BYTES_MAX``: a hostile server cannot fill memory."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):  # a programmer error: async only
            raise TypeError("an async transport answered with a sync stream")

        async def bounded() -> AsyncIterator[bytes]:
            size = 0
            try:
                async for chunk in stream:
                    size += len(chunk)
                    if size > RESPONSE_BYTES_MAX:
                        raise httpx.ReadError(
                            f"the MCP server sent over {RESPONSE_BYTES_MAX} bytes"
                        )
                    yield chunk
            finally:
                await stream.aclose()

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Stream(bounded()),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()


def check_mcp_url(url: str) -> str | None:
    """Why ``url`` cannot be an MCP server's address, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an MCP server is reached over http(s), with a host"
    if parts.fragment:
        return "an MCP server's URL has no #fragment"
    return None


@asynccontextmanager
async def open_mcp(
    url: str, settings: AgentSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over streamable HTTP, with explicit timeouts, limits and a size bound."""
    problem = check_mcp_url(url)
    if problem is not None:
        raise ValueError(f"{url!r}: {problem}")
    http = httpx.AsyncClient(
        timeout=settings.http_timeout(),
        limits=settings.http_limits(),
        follow_redirects=False,  # the mcp client follows same-origin redirects itself
        transport=_Bounded(transport or httpx.AsyncHTTPTransport(limits=settings.http_limits())),
    )
    async with (
        http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


class PayingSession:
    """One MCP server's tools, paid for by one payer; see the module doc."""

    def __init__(self, session: ClientSession, payer: Payer, server_url: str) -> None:
        self.session = session
        self.payer = payer
        self.server_url = server_url

    def __repr__(self) -> str:
        return f"PayingSession({self.server_url!r}, {self.payer!r})"

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        purpose: str | None = None,
        max_price: int | None = None,
        expected_buys: int | None = None,
    ) -> ToolCall:
        """Call ``name``, paying its 402 within ``max_price``, the policy and the books.

        The books record what was bought (:func:`bought_resource`: a site's
        page for ``fetch``); when that is not the tool itself, the purpose
        keeps the server and the tool's name.
        """
        args = dict(arguments or {})
        resource = bought_resource(self.server_url, name, args)
        if resource != tool_resource(self.server_url, name):
            purpose = _with_tool(purpose, self.server_url, name)
        intent = Intent(
            task_id=task_id, purpose=purpose, max_price=max_price, expected_buys=expected_buys
        )
        try:
            first = await self._send(name, args, None)
        except _CALL_ERRORS as exc:
            return ToolCall(name, resource, None, None, error=_one_line(exc))
        challenge = tool_challenge(first)
        if challenge is None:
            free = PaymentOutcome("free", resource, task_id=task_id, purpose=purpose)
            return ToolCall(name, resource, first, free)
        prepared = await anyio.to_thread.run_sync(self.payer.prepare, resource, challenge, intent)
        if isinstance(prepared, PaymentOutcome):
            return ToolCall(name, resource, None, prepared)
        resynced = False
        retries = 0
        settings = self.payer.settings
        while True:
            try:
                paid = await self._send(name, args, payment_meta(prepared))
            except _CALL_ERRORS as exc:
                # The payment was sent and no answer came: what happened is the chain's to say.
                outcome = await anyio.to_thread.run_sync(self.payer.after_error, prepared, exc)
                return ToolCall(name, resource, None, outcome, error=_one_line(exc))
            if settlement_pending(paid) and retries < settings.settle_retry_count_max:
                # Still settling this payment: ask again with the same one, never a new signature.
                retries += 1
                await anyio.sleep(settings.settle_retry_delay_s)
                continue
            answer = tool_answer(paid)
            outcome = await anyio.to_thread.run_sync(self.payer.conclude, prepared, answer)
            if outcome.reason == "channel_resynced" and not resynced and answer.challenge:
                # A corrective answer on a channel: sign once more from the resynced state.
                resynced = True
                again = await anyio.to_thread.run_sync(
                    self.payer.prepare, resource, answer.challenge, intent
                )
                if isinstance(again, PaymentOutcome):
                    return ToolCall(name, resource, None, again)
                prepared, retries = again, 0
                continue
            return ToolCall(name, resource, paid, outcome)

    async def probe(self, name: str, arguments: dict[str, Any] | None = None) -> ToolCall:
        """Call ``name`` without paying: a free tool's result, or its terms (nothing signed)."""
        resource = bought_resource(self.server_url, name, dict(arguments or {}))
        try:
            result = await self._send(name, dict(arguments or {}), None)
        except _CALL_ERRORS as exc:
            return ToolCall(name, resource, None, None, error=_one_line(exc))
        if tool_challenge(result) is None:
            return ToolCall(name, resource, result, PaymentOutcome("free", resource))
        return ToolCall(name, resource, result, None)

    async def _send(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None
    ) -> CallToolResult:
        params = CallToolRequestParams(
            name=name,
            arguments=arguments,
            _meta=RequestParams.Meta(**meta) if meta is not None else None,
        )
        return await self.session.send_request(
            ClientRequest(CallToolRequest(params=params)),
            CallToolResult,
            request_read_timeout_seconds=timedelta(seconds=self.payer.settings.read_timeout_s),
        )


# A call that got no usable answer: the server's own JSON-RPC error, a broken
# connection, a timeout, or an answer that is not a tool result.
_CALL_ERRORS: Final = (
    McpError,
    httpx.HTTPError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ValueError,
)


def _with_tool(purpose: str | None, server_url: str, tool: str) -> str:
    """The caller's purpose, then which tool of which server it was bought through."""
    via = f"through MCP tool {tool[:128]} at {server_url[:512]}"
    return f"{purpose} ({via})" if purpose else via


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
