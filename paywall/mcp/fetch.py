"""The blogger's site over MCP: a ``fetch`` tool and the paid routes as resources.

``fetch`` (argument ``path``, e.g. ``/posts/hello``) asks the site's own
paywall for the page, in this process, as a ``GET`` (``farthing.paywall.mcp.exchange``):
the same canonical path, route, price, free preview, payment store, revenue
books, receipts and sign-in as over HTTP. So:

- unpaid, a paid page is the 402 result (``PaymentRequired`` in
  ``structuredContent``), its free preview as a second text;
- paid (``_meta["x402/payment"]``), it is the page's text, with
  ``_meta["x402/payment-response"]`` and, for an article, the receipt in
  ``_meta["farthing/receipt"]`` (``name=value``) to read it again;
- a reader who bought it before, over HTTP or MCP, passes that receipt (the
  cookie pair) in ``_meta["farthing/receipt"]``, or an x402 sign-in-with-x
  header value in ``_meta["sign-in-with-x"]``, and reads it without paying;
- a free path is fetched free.

A site that declares (``PaywallOptions.discovery``) declares the tool, not the
page, in a paid page's 402 over MCP, as x402's bazaar spec declares a tool:
``extensions.bazaar`` of ``input.type`` ``mcp`` (``declare_tool``: the tool's
name, its input schema, the path asked as the example) and ``resource.url``
the site's MCP endpoint. A facilitator with a catalog lists the site's
``fetch`` tool from a sale made over MCP, keyed by that endpoint and the
tool's name.

``resources/list`` names each paid route as a resource template (its price in
the description); ``resources/read`` serves what ``fetch`` serves, and a page
that needs paying is a JSON-RPC error (code 402) whose data is the
``PaymentRequired``: x402's tool-result binding is for tools, so pay through
``fetch`` (or send the payment in the read's ``_meta``).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from mcp.server.lowlevel import Server
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.shared.exceptions import McpError
from mcp.types import (
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ErrorData,
    ResourceTemplate,
    TextContent,
    Tool,
)
from pydantic import AnyUrl

from farthing.paywall.discovery.declaration import declare_tool
from farthing.paywall.edge.challenge import TOOL_SCOPE_KEY, ToolDeclaration, decode_text
from farthing.paywall.edge.middleware import PaywallMiddleware
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.mcp.exchange import (
    Answer,
    InnerRequest,
    error_result,
    exchange,
    failure_result,
    request_host,
    tool_result,
)
from farthing.paywall.mcp.meta import (
    PAYMENT_RESPONSE_META,
    RECEIPT_META,
    RECEIPT_PAIR_RE,
    meta_of,
    payment_header,
    proofs_of,
)

__all__ = ["FETCH_INPUT_SCHEMA", "FETCH_TOOL", "PATH_CHARS_MAX", "site_server"]

FETCH_TOOL: Final = "fetch"
PATH_CHARS_MAX: Final = 2048
FETCH_DESCRIPTION: Final = (
    "Read a page of this site by its path. A paid page answers with its x402 "
    "payment terms and free preview; pay with _meta['x402/payment']."
)
FETCH_INPUT_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "The page's path, e.g. /posts/hello",
            "maxLength": PATH_CHARS_MAX,
        }
    },
    "required": ["path"],
    "additionalProperties": False,
}
# The path asked is the declaration's example up to this length (buyers echo a
# declaration in their payment, so it stays small); a longer one declares none.
_EXAMPLE_PATH_CHARS_MAX: Final = 256
_PATH_RE: Final = re.compile(r"^/[\x21-\x7e]*$")  # printable ASCII, no spaces
_ACCEPT: Final = b"text/plain, application/json;q=0.9, */*;q=0.5"  # never a browser's page
_TEXT_KINDS: Final = ("text/", "application/json", "application/xml", "application/xhtml+xml")


def site_server(
    paywall: PaywallMiddleware, *, name: str = "farthing-site", endpoint: str = "/mcp"
) -> Server[Any, Any]:
    """The site's MCP server over its paywall (``farthing paywall serve`` with ``mcp = true``).

    ``endpoint`` is the path the server is mounted at: a declared tool's resource URL.
    """
    server: Server[Any, Any] = Server(name)
    fetch_tool = Tool(
        name=FETCH_TOOL, description=FETCH_DESCRIPTION, inputSchema=dict(FETCH_INPUT_SCHEMA)
    )

    @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
    async def list_tools() -> list[Tool]:
        return [fetch_tool]

    @server.call_tool(validate_input=True)  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> CallToolResult:
        if name != FETCH_TOOL:
            return error_result("unknown_tool", f"This server has one tool, {FETCH_TOOL}.")
        path = arguments.get("path")
        return await _fetch(paywall, server.request_context, path, endpoint)

    @server.list_resource_templates()  # type: ignore[no-untyped-call,untyped-decorator]
    async def list_templates() -> list[ResourceTemplate]:
        base = _base_url(paywall, server.request_context)
        return [
            ResourceTemplate(
                uriTemplate=base + _template(route.route.path),
                name=route.route.path,
                description=(
                    f"{route.route.description or 'A paid page'}: "
                    f"{_price_text(route)} a read, through the fetch tool"
                ),
                mimeType=route.route.mime_type or None,
            )
            for route in paywall.routes
            if "GET" in route.methods
        ]

    @server.read_resource()  # type: ignore[no-untyped-call,untyped-decorator]
    async def read_resource(uri: AnyUrl) -> Iterable[ReadResourceContents]:
        base = _base_url(paywall, server.request_context)
        text = str(uri)
        if not text.startswith(base + "/"):
            raise McpError(ErrorData(code=-32602, message="not a resource of this site"))
        result = await _fetch(paywall, server.request_context, text[len(base) :], endpoint)
        if result.isError:
            raise McpError(
                ErrorData(
                    code=402 if _is_payment_required(result) else -32603,
                    message="payment required: pay through the fetch tool"
                    if _is_payment_required(result)
                    else "the page could not be read",
                    data=result.structuredContent,
                )
            )
        return [_contents(block) for block in result.content]

    return server


async def _fetch(
    paywall: PaywallMiddleware, context: Any, path: Any, endpoint: str
) -> CallToolResult:
    if not isinstance(path, str) or len(path) > PATH_CHARS_MAX or not _PATH_RE.match(path):
        return error_result("invalid_path", "path must be printable ASCII starting with '/'")
    target, _, query = path.partition("?")
    if "#" in target:
        return error_result("invalid_path", "path must not hold a fragment ('#')")
    meta = meta_of(context)
    options = paywall.options
    request = InnerRequest(
        path=target,
        method="GET",
        query=query.encode("ascii"),
        host=request_host(context),
        scheme="https" if (options.public_url or "").startswith("https://") else "http",
        headers=((b"accept", _ACCEPT), *proofs_of(meta).headers),
        body_bytes_max=options.response_body_bytes_max,
        scope_extra=_declaring(paywall, context, path, endpoint),
    )
    outcome = await exchange(paywall, request, payment_header(meta))
    if isinstance(outcome, CallToolResult):
        return outcome
    if not 200 <= outcome.status < 300:
        return failure_result(outcome)
    meta_out: dict[str, Any] = {}
    settled = outcome.settlement()
    if settled is not None:
        meta_out[PAYMENT_RESPONSE_META] = settled
    receipt = _receipt_of(outcome)
    if receipt is not None:
        meta_out[RECEIPT_META] = receipt
    return tool_result([_content_of(outcome, request)], meta=meta_out)


def _declaring(
    paywall: PaywallMiddleware, context: Any, path: str, endpoint: str
) -> dict[str, Any]:
    """The scope key that has a declaring site's 402 declare this tool (see the module doc)."""
    if paywall.options.discovery is None:
        return {}
    url = _base_url(paywall, context) + endpoint
    example = path if len(path) <= _EXAMPLE_PATH_CHARS_MAX else None
    try:
        declared = _fetch_declaration(example)
    except PaywallConfigError:  # an example the facilitator's rules refuse: declare none
        declared = _fetch_declaration(None)
    return {TOOL_SCOPE_KEY: ToolDeclaration(url, declared)}


@functools.lru_cache(maxsize=256)
def _fetch_declaration(example_path: str | None) -> Mapping[str, Any]:
    """``fetch``'s bazaar declaration, checked once per example (the facilitator's own rules)."""
    return declare_tool(
        FETCH_TOOL,
        FETCH_INPUT_SCHEMA,
        description=FETCH_DESCRIPTION,
        example=None if example_path is None else {"path": example_path},
        output_example=None,
    )


def _content_of(answer: Answer, request: InnerRequest) -> ContentBlock:
    media_type = answer.header("content-type") or "application/octet-stream"
    kind = media_type.split(";", 1)[0].strip().lower()
    text = decode_text(answer.body, media_type) if kind.startswith(_TEXT_KINDS) else None
    if text is not None:
        return TextContent(type="text", text=text)
    uri = f"{request.scheme}://{request.host}{request.path}"
    blob = BlobResourceContents(
        uri=AnyUrl(uri), mimeType=kind, blob=base64.b64encode(answer.body).decode("ascii")
    )
    return EmbeddedResource(type="resource", resource=blob)


def _receipt_of(answer: Answer) -> str | None:
    """The receipt cookie a paid (or signed-in) article answer set, as ``name=value``."""
    for key, value in answer.headers:
        if key.lower() == b"set-cookie":
            match = RECEIPT_PAIR_RE.match(value.decode("latin-1").strip())
            if match is not None:
                return match.group(0)
    return None


def _base_url(paywall: PaywallMiddleware, context: Any) -> str:
    public = paywall.options.public_url
    if public:
        return public.rstrip("/")
    return f"http://{request_host(context)}"


def _template(glob: str) -> str:
    """A route's glob as an RFC 6570 template: ``/posts/*`` → ``/posts/{name}``."""
    names = iter(f"part{n}" for n in range(1, 100))
    out = re.sub(
        r"\*\*|\*|\?", lambda m: "{+rest}" if m[0] == "**" else "{" + next(names) + "}", glob
    )
    return out


def _price_text(route: Any) -> str:
    quote = route.static_quote
    return quote.describe() if quote is not None else "a price per request"


def _is_payment_required(result: CallToolResult) -> bool:
    structured = result.structuredContent or {}
    return "accepts" in structured and "x402Version" in structured


def _contents(block: ContentBlock) -> ReadResourceContents:
    if isinstance(block, TextContent):
        return ReadResourceContents(content=block.text, mime_type="text/plain")
    if isinstance(block, EmbeddedResource) and isinstance(block.resource, BlobResourceContents):
        return ReadResourceContents(
            content=base64.b64decode(block.resource.blob), mime_type=block.resource.mimeType
        )
    return ReadResourceContents(content="", mime_type="text/plain")
