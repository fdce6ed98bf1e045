"""Paid tools for a developer's own MCP server (``mcp``'s FastMCP), over the paywall core.

::

    server = FastMCP("weather")
    paid = PaidTools(server, options=PaywallOptions(routes=(), facilitator=...,
                                                    store=..., books=..., pay_to=..., asset=...))

    @paid.tool("0.01 USDC")
    async def forecast(city: str) -> str: ...

    @paid.tool(lambda args: f"{len(args['cities'])} * 0.01 USDC" ...,   # a computed price
               schemes=("exact", "batch-settlement"))
    async def forecasts(cities: list[str]) -> str: ...

Each paid tool is a route of one :class:`PaywallMiddleware` built from the
same :class:`PaywallOptions` as the HTTP edge (the same facilitator, payment
store, revenue books and channels): path ``/<tool name>``, method ``POST``,
resource ``mcp://tool/<tool name>`` as x402's MCP binding names it. A call is
run through it by :func:`farthing.paywall.mcp.exchange.exchange`, so the
order of events is the edge's: verify, claim the payment (a copy of it never
runs the tool), run the tool, settle only when it succeeded, book, answer
with ``_meta["x402/payment-response"]``. A tool that raises or answers
``isError`` is the handler's failure: the claim is released, nothing is
settled or charged, and the caller gets the tool's error.

A computed price is a function of the tool's validated arguments returning
what a route's price may be (``"0.01 USDC"``, atomic units, a ``Quote``).
Channel claims are made with ``farthing paywall claim`` over the same
payment database (a tool server runs no ASGI lifespan of the paywall's).

Discovery: with ``PaywallOptions.discovery`` (its ``service`` metadata) and
the public URL the server is reached at (``app(public_url=...)``, else
``PaywallOptions.public_url``), each paid tool declares itself in its 402 as
x402's bazaar spec declares a tool: ``extensions.bazaar`` of ``input.type``
``mcp`` (the tool's name, its own input schema, an optional example) and
``resource.url`` the server's MCP endpoint (``<public URL>/mcp``), which the
seller also sends its facilitator, so ``farthing facilitator serve`` catalogs
the tool keyed by that endpoint and the tool's name. The URL comes from
configuration only, never from a request's Host: a caller cannot have the
seller declare its tools at another address. Without a public URL nothing is
declared.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.tools import Tool
from mcp.types import CallToolResult, TextContent

from farthing.paywall.discovery.declaration import declare_tool
from farthing.paywall.edge.asgi import send_json
from farthing.paywall.edge.challenge import TOOL_SCOPE_KEY, ToolDeclaration
from farthing.paywall.edge.middleware import PaywallMiddleware, PaywallOptions
from farthing.paywall.edge.pricing import Quote
from farthing.paywall.edge.routes import PaidRoute, PriceRequest, RouteTable
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.mcp.exchange import InnerRequest, error_result, exchange, tool_result
from farthing.paywall.mcp.meta import PAYMENT_RESPONSE_META, meta_of, payment_header
from farthing.paywall.mcp.mount import MCP_BODY_BYTES_MAX_DEFAULT, McpMount

__all__ = ["TOOL_NAME_RE", "PaidTools", "ToolPrice"]

ToolPrice = str | int | Quote
ToolPriceFunction = Callable[[Mapping[str, Any]], ToolPrice | Awaitable[ToolPrice]]
F = TypeVar("F", bound=Callable[..., Any])

# MCP's tool names, less what a path could misread: no dot-only names, no slashes.
TOOL_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_CONTEXT_PARAM: Final = "x402_context"
_RESOURCE_SCHEME: Final = "mcp"
_RESOURCE_HOST: Final = "tool"
MCP_PATH: Final = "/mcp"


@dataclass(slots=True)
class _Call:
    """One paid call in flight: the tool, its validated arguments, and what it answered."""

    tool: Tool
    arguments: dict[str, Any]
    context: Any
    result: CallToolResult | None = None

    async def run(self) -> CallToolResult:
        kwargs = dict(self.arguments)
        if self.tool.context_kwarg is not None:
            kwargs[self.tool.context_kwarg] = self.context
        fn = self.tool.fn
        try:
            if self.tool.is_async:
                value = await fn(**kwargs)
            else:
                value = await anyio.to_thread.run_sync(lambda: fn(**kwargs))
            converted = self.tool.fn_metadata.convert_result(value)
        except Exception as exc:  # noqa: BLE001 - the tool's failure is its caller's error result
            self.result = tool_result(
                [TextContent(type="text", text=f"Error executing tool {self.tool.name}: {exc}")],
                is_error=True,
            )
            return self.result
        self.result = _as_result(converted)
        return self.result


_CURRENT: ContextVar[_Call] = ContextVar("farthing_mcp_call")


async def _run_tool(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The paywall's handler: run the current call's tool; a failed tool is a 500."""
    if scope["type"] != "http":
        return
    result = await _CURRENT.get().run()
    status = 500 if result.isError else 200
    body = b'{"error":"tool_failed"}' if result.isError else b"{}"
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _no_route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send_json(send, 404, {"error": "not_found", "message": "MCP is served at /mcp"})


class PaidTools:
    """Registers paid tools on one FastMCP server, all sold through one paywall."""

    def __init__(self, server: FastMCP, *, options: PaywallOptions) -> None:
        if not isinstance(server, FastMCP):
            raise PaywallConfigError("PaidTools needs a FastMCP server")
        if not isinstance(options, PaywallOptions):
            raise PaywallConfigError("options must be a PaywallOptions")
        self.server = server
        self._public_url = _checked_public_url(options.public_url)
        # Tools are not articles and name no site: no receipts, no sign-in, mcp:// resources.
        self.options = replace(options, routes=(), receipts=None, public_url=None)
        self._routes: list[PaidRoute] = []
        self._declared: dict[str, ToolDeclaration] = {}
        self._pending: list[tuple[Tool, Mapping[str, Any] | None, Any]] = []
        self._paywall: PaywallMiddleware | None = None

    @property
    def endpoint(self) -> str | None:
        """The MCP endpoint the tools are declared at (``<public URL>/mcp``), if one is known."""
        return None if self._public_url is None else self._public_url + MCP_PATH

    def app(
        self, *, body_bytes_max: int = MCP_BODY_BYTES_MAX_DEFAULT, public_url: str | None = None
    ) -> McpMount:
        """The server as an ASGI app at ``/mcp`` (stateless, JSON answers), to put behind ``HostGuard``.

        Its body is bounded and parsed as UTF-8 JSON text before MCP sees it
        (``McpMount``): ``FastMCP.streamable_http_app()`` answers 500 to a body
        that is not UTF-8, nests 100,000 deep or holds a lone surrogate.
        ``public_url`` is the origin (and base path) the app is reached at:
        with ``PaywallOptions.discovery``, each tool declares ``<public_url>/mcp``.
        """
        if public_url is not None:
            if self._paywall is not None and _checked_public_url(public_url) != self._public_url:
                raise PaywallConfigError("set the public URL before the first call")
            self._public_url = _checked_public_url(public_url)
            self._declare_pending()
        return McpMount(_no_route, self.server._mcp_server, body_bytes_max=body_bytes_max)

    def tool(
        self,
        price: ToolPrice | ToolPriceFunction,
        *,
        name: str | None = None,
        description: str | None = None,
        schemes: tuple[str, ...] = ("exact",),
        pay_to: str | None = None,
        max_timeout_seconds: int | None = None,
        example: Mapping[str, Any] | None = None,
        output_example: Any = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as a tool that costs ``price`` a call.

        ``example`` (arguments) and ``output_example`` go into the tool's bazaar
        declaration when the tools declare (see the module doc).
        """

        def register(fn: F) -> F:
            if self._paywall is not None:
                raise PaywallConfigError("register every paid tool before the first call")
            tool = Tool.from_function(fn, name=name, description=description)
            if not TOOL_NAME_RE.match(tool.name) or set(tool.name) == {"."}:
                raise PaywallConfigError(f"a paid tool's name must match {TOOL_NAME_RE.pattern}")
            route = PaidRoute(
                "/" + tool.name,
                _route_price(price),
                methods=("POST",),
                pay_to=pay_to,
                max_timeout_seconds=max_timeout_seconds,
                description=tool.description,
                mime_type="application/json",
                schemes=schemes,
            )
            if "batch-settlement" in schemes and self.options.channels is None:
                raise PaywallConfigError(
                    f"paid tool {tool.name}: batch-settlement needs PaywallOptions.channels"
                )
            # Checked now: a price that does not convert fails at start-up.
            RouteTable(
                [route],
                pay_to=self.options.pay_to,
                asset=self.options.asset,
                rates=self.options.rates,
                rounding=self.options.rounding,
            )
            entry = self._entry(tool, fn)
            if self.options.discovery is not None:
                # Checked now, before anything is registered: a declaration a
                # facilitator would drop fails here.
                _declaration(tool, example, output_example)
                self._pending.append((tool, example, output_example))
                self._declare_pending()
            self._routes.append(route)
            self.server.add_tool(
                entry,
                name=tool.name,
                title=tool.title,
                description=tool.description,
                structured_output=False,
            )
            return fn

        return register

    def _declare_pending(self) -> None:
        """Each registered tool's declaration, once the endpoint is known."""
        endpoint = self.endpoint
        for tool, example, output_example in self._pending:
            if endpoint is not None:
                declared = _declaration(tool, example, output_example)
                self._declared[tool.name] = ToolDeclaration(endpoint, declared)
        if endpoint is not None:
            self._pending.clear()

    def paywall(self) -> PaywallMiddleware:
        """The one paywall every tool is sold through, built at the first call."""
        if self._paywall is None:
            # Without the endpoint a tool has no URL a catalog could list: declare nothing.
            discovery = self.options.discovery if self.endpoint is not None else None
            self._paywall = PaywallMiddleware(
                _run_tool,
                options=replace(self.options, routes=tuple(self._routes), discovery=discovery),
            )
        return self._paywall

    async def call(self, tool: Tool, arguments: dict[str, Any], context: Any) -> CallToolResult:
        """One call of a paid tool: the 402 result, the paid result, or an error result."""
        call = _Call(tool, arguments, context)
        request = InnerRequest(
            path="/" + tool.name,
            host=_RESOURCE_HOST,
            scheme=_RESOURCE_SCHEME,
            body_bytes_max=self.options.response_body_bytes_max,
            scope_extra=_declaring(self._declared.get(tool.name)),
        )
        token = _CURRENT.set(call)
        try:
            outcome = await exchange(self.paywall(), request, payment_header(meta_of(context)))
        finally:
            _CURRENT.reset(token)
        if isinstance(outcome, CallToolResult):
            return outcome
        result = call.result
        if 200 <= outcome.status < 300 and result is not None and not result.isError:
            settled = outcome.settlement()
            if settled is None:
                return result
            meta = {**(result.meta or {}), PAYMENT_RESPONSE_META: settled}
            return tool_result(result.content, structured=result.structuredContent, meta=meta)
        if result is not None and result.isError:
            return result  # the tool failed: released, nothing settled
        if 200 <= outcome.status < 300 and result is None:
            # The paywall answered for itself (a channel's cooperative refund).
            body = outcome.json()
            settled = outcome.settlement()
            return tool_result(
                [TextContent(type="text", text=outcome.body.decode("utf-8", "replace"))],
                structured=body or None,
                meta={PAYMENT_RESPONSE_META: settled} if settled is not None else None,
            )
        return error_result(
            str(outcome.json().get("error") or "paywall_error"),
            f"The paywall answered {outcome.status}.",
        )

    def _entry(self, tool: Tool, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The function FastMCP registers: the tool's own parameters, plus its Context."""
        signature = inspect.signature(fn, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name != tool.context_kwarg]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            raise PaywallConfigError(f"paid tool {tool.name}: **kwargs cannot be a tool's input")
        if any(p.name == _CONTEXT_PARAM for p in params):
            raise PaywallConfigError(f"paid tool {tool.name}: {_CONTEXT_PARAM} is reserved")
        context = inspect.Parameter(
            _CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Context
        )

        async def entry(**kwargs: Any) -> CallToolResult:
            ctx = kwargs.pop(_CONTEXT_PARAM)
            return await self.call(tool, kwargs, ctx)

        annotations = {
            p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty
        }
        entry.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*params, context], return_annotation=CallToolResult
        )
        entry.__annotations__ = {**annotations, _CONTEXT_PARAM: Context, "return": CallToolResult}
        entry.__name__ = tool.name
        entry.__doc__ = tool.description
        return entry


def _declaration(tool: Tool, example: Any, output_example: Any) -> dict[str, Any]:
    """The tool's bazaar declaration; ``PaywallConfigError`` for one a facilitator would drop."""
    if example is not None and not isinstance(example, Mapping):
        raise PaywallConfigError(f"paid tool {tool.name}: example must be the tool's arguments")
    return declare_tool(
        tool.name,
        tool.parameters,
        description=tool.description or None,
        example=example,
        output_example=output_example,
    )


def _declaring(declared: ToolDeclaration | None) -> dict[str, Any]:
    """The scope key that has the paywall's 402 declare this tool (``TOOL_SCOPE_KEY``)."""
    return {} if declared is None else {TOOL_SCOPE_KEY: declared}


def _checked_public_url(url: str | None) -> str | None:
    """An http(s) origin (and base path) without query, fragment or userinfo; None stays None."""
    if url is None:
        return None
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:
        parts, host = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not host
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or any(ord(c) < 0x21 or ord(c) > 0x7E for c in url)
    ):
        raise PaywallConfigError(
            f"a public URL must be http(s)://host[:port][/base] without query or userinfo: {url!r}"
        )
    return url.rstrip("/")


def _route_price(price: ToolPrice | ToolPriceFunction) -> Any:
    """A route's price: the fixed one, or the tool's price function over its arguments."""
    if not callable(price):
        return price
    function = price

    def of_call(request: PriceRequest) -> Any:
        return function(_CURRENT.get().arguments)

    return of_call


def _as_result(converted: Any) -> CallToolResult:
    """FastMCP's converted output (content, or content and structured) as a result."""
    if isinstance(converted, CallToolResult):
        return converted
    if isinstance(converted, tuple) and len(converted) == 2:
        content, structured = converted
        return tool_result(list(content), structured=structured)
    return tool_result(list(converted))
