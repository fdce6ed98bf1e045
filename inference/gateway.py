"""The paid inference gateway: an OpenAI-compatible proxy that sells a vLLM server per call.

::

    client ──▶ Gateway (quotes the call) ──▶ PaywallMiddleware (x402 exact) ──▶ proxy ──▶ vLLM
               400/404/413 refusals          402 with the quoted price          502/503/504
               503/504 if vLLM is down       verify → run → settle on 2xx

Routes: ``GET /v1/models`` (free), ``POST /v1/chat/completions`` (paid),
``GET /v1/price`` (the current price per 1k tokens and every input behind
it), ``POST /v1/price`` (the price of one chat request, held like a 402's),
and ``GET /health``.

The price depends on the request body (prompt tokens plus ``max_tokens`` for
each sequence, ``n`` or ``best_of``), which the paywall's price function does
not see, so the gateway reads and prices the body first
(``farthing.inference.quoting``). Only the fields it prices are accepted and
forwarded (``FORWARDED_FIELDS``); a request that cannot be priced, or asks for
work the price does not cover, is refused before any payment is asked for. A priced request goes on
with a private header naming its quote; the paywall's dynamic price
(:meth:`Gateway.price`) reads the amount from it. A client cannot forge the
header: the gateway removes any copy of it from every incoming request.

Nothing is charged for a failed call. The paywall verifies the payment (and
claims its nonce) before the upstream runs, but settles only after a 2xx
answer; the proxy answers 502 (``upstream_error``, ``upstream_failed``), 503
(``upstream_unavailable``) or 504 (``upstream_timeout``) when vLLM errs, is
down, dies mid-request or does not answer within ``upstream_timeout_s``, and
the paywall releases the payment unsettled. A JSON answer is held until its
payment settles.

**Streaming.** ``"stream": true`` is answered with vLLM's server-sent events
relayed as they come (``farthing.inference.streaming``), charged when the
stream ends. Its price is not known before the call, so only a scheme that
charges usage can pay for it: the gateway asks the paywall for a meter on
the request (``farthing.paywall.schemes.metering``), its 402 for a streamed
request offers only those schemes (``batch-settlement`` and ``upto``,
whichever it sells), and a stream paid any other way (``exact``) is refused
with one line (400 ``stream_needs_metered_scheme``), the payment released
unsettled. A gateway with neither refuses to quote a paid stream at all.

**Per-token metering.** With ``GatewayPayment.channels`` the route also
offers x402 ``batch-settlement`` (after ``exact``). The quote (prompt plus
``max_tokens``) is then the voucher's ceiling, and the answer's real
``usage`` (prompt plus completion tokens, at the quote's price per 1k tokens,
rounded up) is what is charged, through the paywall's ``Farthing-Charge``
header; an answer without a readable ``usage`` is charged the ceiling. With
``GatewayPayment.upto`` the route also offers x402 ``upto`` (last): the
payer signs the quote as a Permit2 ceiling and the same usage charge is
settled on chain once, after the answer (``farthing.paywall.edge.upto``);
nothing is settled for a failed call. With ``exact`` the amount is fixed
before the call runs, so the quote is charged and the header is ignored (the
paywall strips it either way).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.errors import InvariantError
from farthing.inference.errors import (
    InferenceConfigError,
    InferenceUpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from farthing.inference.pricing import call_price_atomic
from farthing.inference.quoting import CallQuote, ChatPricer, Refusal
from farthing.inference.settings import InferenceSettings
from farthing.inference.streaming import StreamedChat
from farthing.inference.upstream import Upstream
from farthing.web import read_body

if TYPE_CHECKING:
    from farthing.paywall.edge.routes import PriceRequest
    from farthing.wallet.money import Asset

__all__ = [
    "CHAT_PATH",
    "CHAT_TOOL",
    "METERED_SCHEMES",
    "QUOTE_HEADER",
    "Gateway",
    "GatewayPayment",
    "upstream_refusal",
    "usage_charge",
]

CHAT_PATH: Final = "/v1/chat/completions"
CHAT_TOOL: Final = "chat"  # the chat endpoint as an MCP tool (Gateway.mcp_app)
_CHAT_TOOL_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "model": {"type": "string", "maxLength": 256},
        "messages": {
            "type": "array",
            "maxItems": 256,
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string", "maxLength": 32},
                    "content": {"type": "string"},
                },
                "required": ["role", "content"],
            },
        },
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0},
    },
    "required": ["model", "messages"],
    "additionalProperties": False,
}
QUOTE_HEADER: Final = "x-farthing-quote"
_QUOTE_HEADER_BYTES: Final = QUOTE_HEADER.encode()
# farthing.paywall.schemes.batch_settlement.server.CHARGE_HEADER, spelled here so that the
# free gateway does not import the paywall.
_CHARGE_HEADER: Final = "farthing-charge"
_USAGE_TOKENS_MAX: Final = 10**9  # far above any context; a larger count is not believed
# farthing.paywall.schemes.metering's METER_EXTENSION and METER_ASKED, spelled here too.
_METER_EXTENSION: Final = "farthing.meter"
_METER_ASKED: Final = "asked"
# The schemes that charge usage, so can pay for a stream.
METERED_SCHEMES: Final = ("batch-settlement", "upto")
_STREAM_REFUSAL: Final = (
    "a streamed answer is charged its usage when it ends, so it is paid with "
    "batch-settlement (or upto), not exact, whose price is fixed before the call; "
    "or set stream to false"
)
_DESCRIPTION: Final = (
    "One chat completion: prompt tokens plus max_tokens per sequence (n, or best_of) "
    "at the price per 1k tokens"
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """How the gateway is paid: the paywall's facilitator, payment store, asset and payee."""

    facilitator: Any  # farthing.paywall.Facilitator
    store: Any  # farthing.paywall.PaymentStore
    asset: Asset
    pay_to: str
    books: Any = None  # farthing.paywall.RevenueBook, to book revenue in the ledger
    public_url: str | None = None
    max_timeout_seconds: int | None = None
    # farthing.paywall.schemes.batch_settlement.server.ChannelOptions: also sell through
    # batch-settlement channels, charging each call's real usage.
    channels: Any = None
    # Also sell through x402 upto: the quote is the signed ceiling, the real usage is
    # settled on chain once (the facilitator must settle upto: LocalFacilitator does).
    upto: bool = False
    # Whom upto payers let settle (extra.facilitatorAddress): a remote facilitator's
    # address from its /supported; None takes the local facilitator's own key.
    upto_facilitator: str | None = None


def _canonical(scope: Scope) -> str | None:
    """The path the paywall will match (``None`` where it refuses the path with 400)."""
    from farthing.paywall.edge.paths import PathRefusal, canonical_path

    path = canonical_path(dict(scope))
    return None if isinstance(path, PathRefusal) else path


def upstream_refusal(exc: InferenceUpstreamError) -> Refusal:
    """The HTTP answer for an upstream failure: 503 down, 504 too slow, 502 broken."""
    if isinstance(exc, UpstreamUnavailableError):
        return Refusal(503, "upstream_unavailable", str(exc))
    if isinstance(exc, UpstreamTimeoutError):
        return Refusal(504, "upstream_timeout", str(exc))
    return Refusal(502, "upstream_failed", str(exc))


def usage_charge(body: bytes, quote: CallQuote) -> int | None:
    """What an answer's ``usage`` costs at the quote's price, at most the quote; None if unreadable.

    An answer whose usage is missing or malformed returns None, so the ceiling
    (the quote) is charged: the seller never undercharges on a bad answer. So
    does a call with ``best_of`` above ``n``: its usage counts only the
    choices returned, not every sequence generated.
    """
    if quote.call.sequences > quote.call.choices:
        return None
    try:
        usage = json.loads(body).get("usage")
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    counts = (prompt, completion)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
        return None
    tokens = prompt + completion
    if tokens <= 0 or tokens > _USAGE_TOKENS_MAX:
        return None
    return min(quote.amount, call_price_atomic(tokens, quote.per_1k_atomic))


def _json(refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        refusal.body(), status_code=refusal.status, headers={"cache-control": "no-store"}
    )


class Gateway:
    """The gateway as a pure ASGI app; ``payment=None`` serves without charging (a private node)."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        upstream: Upstream | None = None,
        payment: GatewayPayment | None = None,
    ) -> None:
        if payment is not None and payment.asset.decimals != settings.asset_decimals:
            # Prices are computed in the paid asset's atomic units.
            settings = settings.model_copy(update={"asset_decimals": payment.asset.decimals})
        self.settings = settings
        self.upstream = upstream or Upstream(
            settings.upstream_url,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            quick_timeout_s=settings.metrics_timeout_s,
        )
        self.pricer = ChatPricer(settings, self.upstream)
        self.payment = payment
        self._in_flight: dict[str, CallQuote] = {}
        proxy = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route(CHAT_PATH, self._chat, methods=["POST"]),
                Route("/v1/price", self._price_sheet, methods=["GET"]),
                Route("/v1/price", self._price_call, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )
        self.app: Any = proxy if payment is None else self._paywalled(proxy, payment)

    def __repr__(self) -> str:
        return f"Gateway({self.upstream.url!r}, paid={self.payment is not None})"

    def _paywalled(self, proxy: Any, payment: GatewayPayment) -> Any:
        # Imported here: the paywall pulls in the chain stack, which callers
        # of the free gateway (and `import farthing.inference`) do not need.
        from farthing.paywall import PaidRoute, PaywallMiddleware, PaywallOptions

        if not payment.pay_to:
            raise InferenceConfigError("a paid gateway needs a pay_to address")
        schemes = (
            ("exact",)
            + (() if payment.channels is None else ("batch-settlement",))
            + (("upto",) if payment.upto else ())
        )
        route = PaidRoute(
            CHAT_PATH,
            price=self.price,
            methods=("POST",),
            description=_DESCRIPTION,
            mime_type="application/json",
            max_timeout_seconds=payment.max_timeout_seconds,
            schemes=schemes,
        )
        options = PaywallOptions(
            routes=[route],
            facilitator=payment.facilitator,
            store=payment.store,
            books=payment.books,
            pay_to=payment.pay_to,
            asset=payment.asset,
            public_url=payment.public_url,
            channels=payment.channels,
            upto_facilitator=payment.upto_facilitator,
        )
        return PaywallMiddleware(proxy, options=options)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    def mcp_app(self) -> Any:
        """The gateway with MCP at ``/mcp`` beside it: its chat as the paid tool ``chat``.

        A tool call is the same chat request, quoted, paid (``exact``, or
        metered per token through a channel) and answered by the same code as
        over HTTP (``farthing.paywall.mcp.endpoints``); docs/mcp.md.
        """
        from farthing.paywall.mcp.endpoints import EndpointTool, endpoint_server
        from farthing.paywall.mcp.mount import McpMount

        chat = EndpointTool(
            name=CHAT_TOOL,
            description=_DESCRIPTION + ". Answers the OpenAI chat completion as JSON.",
            input_schema=_CHAT_TOOL_SCHEMA,
            path=CHAT_PATH,
        )
        server = endpoint_server(self, [chat], name="farthing-inference")
        body_bytes_max = min(max(self.settings.request_body_bytes_max, 1024), 4 * 1024 * 1024)
        return McpMount(self, server, body_bytes_max=body_bytes_max)

    # ------------------------------------------------------------ the paywall's price

    def price(self, request: PriceRequest) -> int:
        """The paywall's dynamic price: the atomic amount of the quote this request carries."""
        quote = self._in_flight.get(request.headers.get(QUOTE_HEADER, ""))
        if quote is None:
            # The gateway quotes every chat request before the paywall sees it.
            raise InvariantError("a paid chat request reached the paywall without a quote")
        return quote.amount

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != _QUOTE_HEADER_BYTES]
        scope = {**scope, "headers": headers}
        # The paywall matches the canonical path and method; so must the quote,
        # or "//v1/chat/completions" or "post" would reach the paid route unquoted.
        path = scope["path"] if self.payment is None else _canonical(scope)
        # (A route also charges its path with a trailing slash.)
        if str(scope["method"]).upper() == "POST" and path in (CHAT_PATH, CHAT_PATH + "/"):
            await self._quoted(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _quoted(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive, bytes_max=self.settings.request_body_bytes_max)
        if isinstance(body, str):  # refused; after a disconnect nobody is left to answer
            if body == "too_large":
                await _send(
                    send, Refusal(413, "request_too_large", "the request body is too large")
                )
            return
        try:
            quoted = await self.pricer.quote(body)
        except InferenceUpstreamError as exc:
            await _send(send, upstream_refusal(exc))
            return
        if isinstance(quoted, Refusal):
            await _send(send, quoted)
            return
        if quoted.call.stream is not None and self.payment is not None:
            if self.payment.channels is None and not self.payment.upto:
                await _send(send, Refusal(400, "stream_needs_metered_scheme", _STREAM_REFUSAL))
                return
            # The paywall meters this answer, and asks only schemes that charge usage.
            extensions = {**(scope.get("extensions") or {}), _METER_EXTENSION: _METER_ASKED}
            scope = {**scope, "extensions": extensions}
            send = _metered_offers_only(send)
        key = secrets.token_hex(16)
        self._in_flight[key] = quoted
        inner = {**scope, "headers": [*scope["headers"], (_QUOTE_HEADER_BYTES, key.encode())]}
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        try:
            await self.app(inner, replay, send)
        finally:
            del self._in_flight[key]

    # ------------------------------------------------------------ the proxy's routes

    async def _models(self, request: Request) -> Response:
        try:
            answer = await self.upstream.request(
                "GET", "/v1/models", timeout_s=self.settings.metrics_timeout_s
            )
        except InferenceUpstreamError as exc:
            return _json(upstream_refusal(exc))
        if answer.status >= 500:
            return _json(Refusal(502, "upstream_error", answer.error_message()))
        return Response(
            answer.body, answer.status, media_type=answer.content_type or "application/json"
        )

    async def _chat(self, request: Request) -> Response:
        quote = self._in_flight.get(request.headers.get(QUOTE_HEADER, ""))
        if quote is None:  # only reachable by mounting the proxy without the gateway
            return _json(Refusal(400, "not_quoted", "chat requests must come through the gateway"))
        if quote.call.stream is not None:
            meter = (request.scope.get("extensions") or {}).get(_METER_EXTENSION)
            if not hasattr(meter, "finish"):
                if self.payment is not None:  # paid, but not by usage (exact)
                    return _json(Refusal(400, "stream_needs_metered_scheme", _STREAM_REFUSAL))
                meter = None  # a private node: streamed, not charged
            return StreamedChat(
                self.upstream,
                quote,
                meter,
                deadline_s=self.settings.upstream_timeout_s,
                headers=quote.headers(),
            )
        try:
            answer = await self.upstream.chat(quote.call.body)
        except InferenceUpstreamError as exc:
            return _json(upstream_refusal(exc))
        if answer.status >= 500:
            # A 5xx passed on as-is could read as the gateway's own fault; it
            # is the model server's, and it is never charged.
            return _json(
                Refusal(502, "upstream_error", f"the model server failed: {answer.error_message()}")
            )
        headers = {k.decode(): v.decode() for k, v in quote.headers()}
        metered = self.payment is not None and (self.payment.channels or self.payment.upto)
        if metered and answer.status < 300:
            # The channel and upto paths charge the real usage; exact ignores this.
            charge = usage_charge(answer.body, quote)
            if charge is not None:
                headers[_CHARGE_HEADER] = str(charge)
        return Response(
            answer.body,
            answer.status,
            media_type=answer.content_type or "application/json",
            headers=headers,
        )

    async def _price_sheet(self, request: Request) -> Response:
        sheet = await self.pricer.sheet()
        payload = {
            **sheet.to_json(),
            "upstream": self.upstream.url,
            "max_tokens_max": self.settings.max_tokens_max,
            "max_tokens_default": self.settings.max_tokens_default,
            "quote_ttl_s": self.settings.quote_ttl_s,
            "metrics_error": self.pricer.metrics_error,
        }
        if self.payment is not None:
            payload.update(
                asset=self.payment.asset.address,
                network=self.payment.asset.network,
                symbol=self.payment.asset.symbol,
                pay_to=self.payment.pay_to,
            )
        return JSONResponse(payload, headers={"cache-control": "no-store"})

    async def _price_call(self, request: Request) -> Response:
        body = await read_body(request.receive, bytes_max=self.settings.request_body_bytes_max)
        if body == "too_large":
            return _json(Refusal(413, "request_too_large", "the request body is too large"))
        if isinstance(body, str):  # the client left; the answer reaches nobody
            return _json(Refusal(400, "incomplete_body", "the client left before its body ended"))
        try:
            quoted = await self.pricer.quote(body)
        except InferenceUpstreamError as exc:
            return _json(upstream_refusal(exc))
        if isinstance(quoted, Refusal):
            return _json(quoted)
        call = quoted.call
        return JSONResponse(
            {
                "amount": str(quoted.amount),
                "price_per_1k_atomic": quoted.per_1k_atomic,
                "asset_decimals": self.settings.asset_decimals,
                "model": call.model,
                "prompt_tokens": call.prompt_tokens,
                "max_tokens": call.max_tokens,
                "n": call.choices,
                "sequences": call.sequences,
                "tokens": call.tokens,
                "quote_ttl_s": self.settings.quote_ttl_s,
            },
            headers={"cache-control": "no-store"},
        )

    async def _health(self, request: Request) -> Response:
        try:
            answer = await self.upstream.request(
                "GET", "/health", timeout_s=self.settings.metrics_timeout_s
            )
        except InferenceUpstreamError as exc:
            return JSONResponse({"status": "degraded", "upstream": str(exc)}, status_code=503)
        if answer.status != 200:
            return JSONResponse(
                {"status": "degraded", "upstream": f"HTTP {answer.status}"}, status_code=503
            )
        return JSONResponse({"status": "ok", "upstream": "ok"})


def _metered_offers_only(send: Send) -> Send:
    """``send`` for a streamed request: its 402 offers only the schemes that charge usage."""
    start: dict[str, Any] | None = None
    body = bytearray()

    async def offers(message: dict[str, Any]) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] == 402:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        headers, content = _metered_402(list(start.get("headers", [])), bytes(body))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    return offers


def _metered_402(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A 402's ``accepts`` (header and JSON body) without the schemes that cannot stream."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() == b"payment-required":
            try:
                terms = json.loads(base64.b64decode(value, validate=True))
                terms["accepts"] = [
                    a for a in terms.get("accepts", []) if a.get("scheme") in METERED_SCHEMES
                ]
                value = base64.b64encode(json.dumps(terms, separators=(",", ":")).encode())
            except (ValueError, TypeError, AttributeError):
                pass  # the paywall's own header: always readable
        out.append((name, value))
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("accepts"), list):
            data["accepts"] = [
                a
                for a in data["accepts"]
                if isinstance(a, dict) and a.get("scheme") in METERED_SCHEMES
            ]
            body = json.dumps(data, separators=(",", ":")).encode()
    except ValueError:
        pass  # an HTML page (a browser): its pay box signs exact, which refuses to stream
    out = [(k, v) for k, v in out if k.lower() != b"content-length"]
    out.append((b"content-length", str(len(body)).encode()))
    return out, body


async def _send(send: Send, refusal: Refusal) -> None:
    response = _json(refusal)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
