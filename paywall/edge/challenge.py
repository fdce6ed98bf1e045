"""The challenge: a request priced, and the 402 that asks for payment.

:meth:`Challenger.price` turns a matched route into its terms
(:class:`Priced`: the quote, the exact ``PaymentRequirements``, the resource
and a batch-settlement offer when the route takes one). A request without a
payment gets :meth:`Challenger.challenge`: ``PAYMENT-REQUIRED`` and a JSON
body of the same terms, or, for a browser's ``GET``, the paywall page
(``farthing.paywall.edge.page``); an article route runs its handler first,
buffered, and shows only the free preview. Every other refusal of a payment
is :meth:`Challenger.send_402`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final, TypeVar, cast

from farthing.paywall.discovery.declaration import BAZAAR, SiteDiscovery
from farthing.paywall.edge.asgi import (
    EXPOSE,
    BodyTooLarge,
    Send,
    header,
    header_of,
    run_buffered,
    send_buffered,
    send_json,
)
from farthing.paywall.edge.metadata import free_metadata
from farthing.paywall.edge.page import network_label, page_headers, render_page, wants_html
from farthing.paywall.edge.preview import split_preview
from farthing.paywall.edge.pricing import Quote
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.routes import PriceRequest, ResolvedRoute
from farthing.paywall.edge.sign_in import SIGN_IN_WITH_X, declare_sign_in
from farthing.paywall.schemes.batch_settlement.server import ChannelPaywall
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment, ChannelRequirements
from farthing.paywall.schemes.upto.types import EIP2612_KEY, ERC20_APPROVAL_KEY
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.paywall.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResult,
    b64_json,
)

__all__ = [
    "TOOL_SCOPE_KEY",
    "Challenger",
    "Priced",
    "ToolDeclaration",
    "decode_text",
    "resource_url",
]

_Payment = TypeVar("_Payment", PaymentPayload, ChannelPayment, UptoPayment)

# Set by a caller in this process that sells a route as an MCP tool (the site's
# ``fetch``, farthing.paywall.mcp.fetch): no HTTP request can carry a scope key.
TOOL_SCOPE_KEY: Final = "farthing.tool"


@dataclass(frozen=True, slots=True)
class ToolDeclaration:
    """What a site that declares (``discovery``) says of a route sold as an MCP tool.

    The bazaar spec catalogs a tool by its server's endpoint and its name, so the
    402 (and what the facilitator is sent) names ``url``, the MCP endpoint, and
    declares ``bazaar``, the tool's ``mcp``-type declaration, instead of the page.
    """

    url: str
    bazaar: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Priced:
    """A request's terms: what it costs, in which schemes, for which resource."""

    route: ResolvedRoute
    quote: Quote
    requirements: PaymentRequirements
    resource: ResourceInfo
    channel: ChannelRequirements | None = None
    method: str = "GET"  # the request's: the bazaar declaration names it
    tool: ToolDeclaration | None = None  # sold as an MCP tool (TOOL_SCOPE_KEY)
    upto: UptoRequirements | None = None  # the price as a ceiling, when the route offers upto

    def challenge(self, error: str | None) -> PaymentRequired:
        offers: dict[str, Any] = {
            "exact": self.requirements,
            "batch-settlement": self.channel,
            "upto": self.upto,
        }
        accepts = tuple(
            offers[s] for s in self.route.schemes if offers.get(s) is not None
        )  # a ChannelRequirements serializes like an exact entry: only to_wire() is used
        return PaymentRequired(self.resource, cast(Any, accepts), error)


def resource_url(scope: Mapping[str, Any], public_url: str | None) -> str:
    """The resource's URL: the site's configured origin, else the request's Host."""
    path = str(scope["path"])  # ASGI: the full path, root_path included
    if public_url:
        return public_url.rstrip("/") + path
    host = header(scope, b"host") or "localhost"
    return f"{scope.get('scheme', 'http')}://{host}{path}"


class Challenger:
    """Prices requests and answers them with 402s, for one :class:`PaywallMiddleware`."""

    def __init__(
        self,
        app: Any,
        *,
        channels: ChannelPaywall | None,
        public_url: str | None,
        receipts: Receipts | None,
        sign_in: bool,
        preview_selectors: tuple[str, ...],
        body_bytes_max: int,
        discovery: SiteDiscovery | None = None,
        upto_facilitator: str | None = None,
    ) -> None:
        self.app = app
        # Whom an upto payer lets settle (extra.facilitatorAddress): the facilitator's key.
        self.upto_facilitator = upto_facilitator
        self.discovery = discovery  # bazaar declarations and service metadata in every 402
        self.channels = channels
        self.public_url = public_url
        self.receipts = receipts
        self.sign_in = sign_in  # sign-in-with-x is offered on article routes
        self.preview_selectors = preview_selectors
        self.body_bytes_max = body_bytes_max

    async def price(self, scope: dict[str, Any], route: ResolvedRoute) -> Priced:
        """The terms of ``route`` for this request (a dynamic price is quoted here)."""
        request = PriceRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])},
        )
        quote = await route.quote(request)
        requirements = route.requirements(quote)
        resource = ResourceInfo(
            url=resource_url(scope, self.public_url),
            description=route.route.description,
            mime_type=route.route.mime_type,
        )
        channel = None
        if self.channels is not None and "batch-settlement" in route.schemes:
            channel = self.channels.offer(
                network=requirements.network,
                asset=requirements.asset,
                amount=requirements.amount,
                pay_to=requirements.pay_to,
                max_timeout_seconds=requirements.max_timeout_seconds,
                name=requirements.token_name,
                version=requirements.token_version,
            )
        upto = None
        if self.upto_facilitator is not None and "upto" in route.schemes:
            upto = UptoRequirements(
                requirements.network, requirements.asset, requirements.amount,
                requirements.pay_to, requirements.max_timeout_seconds,
                requirements.token_name, requirements.token_version, self.upto_facilitator,
            )  # fmt: skip
        tool = scope.get(TOOL_SCOPE_KEY)
        return Priced(
            route,
            quote,
            requirements,
            resource,
            channel,
            str(scope["method"]).upper(),
            tool if isinstance(tool, ToolDeclaration) else None,
            upto,
        )

    async def challenge(
        self, scope: dict[str, Any], receive: Any, send: Send, priced: Priced
    ) -> None:
        """A request without a payment: the 402 (the page for a browser), with any preview."""
        extra: dict[str, Any] = {}
        page = scope["method"] == "GET" and wants_html(header(scope, b"accept"))
        if priced.route.is_article:
            try:
                buffered = await run_buffered(
                    self.app, scope, receive, body_bytes_max=self.body_bytes_max
                )
            except BodyTooLarge:
                await send_json(send, 500, {"error": "response_too_large"})
                return
            if not 200 <= buffered.status < 300:
                await send_buffered(send, buffered, [])
                return
            media_type = header_of(buffered.headers, b"content-type") or "text/html"
            text = decode_text(bytes(buffered.body), media_type)
            fraction = priced.route.preview_share
            blocks = priced.route.preview_blocks
            if page:
                if text is not None and _is_html(media_type):
                    # The page keeps the site's head: only metadata the preview shows stays.
                    shown = split_preview(text, fraction, media_type, blocks=blocks)
                    text = free_metadata(text, shown)
                await self._send_page(send, priced, text, media_type, fraction, buffered.headers)
                return
            extra = {
                "preview": split_preview(text, fraction, media_type, blocks=blocks)
                if text is not None
                else "",
                "previewFraction": str(fraction),
                "previewMediaType": media_type,
            }
            if blocks is not None:
                extra["previewBlocks"] = str(blocks)
        if page:
            await self._send_page(send, priced, None, "text/plain", Decimal(0), [])
            return
        await self.send_402(send, priced, None, "Payment required.", extra)

    async def _send_page(
        self,
        send: Send,
        priced: Priced,
        text: str | None,
        media_type: str,
        fraction: Decimal,
        site_headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        """The browser's 402: the preview and the pay box (``farthing.paywall.edge.page``)."""
        network = priced.requirements.network
        terms: dict[str, Any] = {
            "x402Version": 2,
            "accepts": priced.requirements.to_wire(),
            "resource": priced.resource.to_wire(),
            "price": {**_price_terms(priced.quote), "symbol": priced.quote.asset.symbol},
            "network": network,
            "networkName": network_label(network),
            "chainId": int(network.split(":", 1)[1]),
            "serverTimeS": int(time.time()),
            "signIn": self._sign_in_offered(priced),
        }
        document = render_page(
            text,
            media_type,
            fraction,
            terms,
            blocks=priced.route.preview_blocks,
            selectors=self.preview_selectors,
            title=priced.route.route.description or "Payment required",
        ).encode("utf-8")
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(document)).encode()),
            (b"cache-control", b"no-store"),
            # The site's own policies (our script is same-origin) or ours, never framed.
            *page_headers(site_headers),
            (b"access-control-expose-headers", EXPOSE.encode()),
            (PAYMENT_REQUIRED_HEADER.encode(), self._challenge_header(priced, None).encode()),
        ]
        await send({"type": "http.response.start", "status": 402, "headers": headers})
        await send({"type": "http.response.body", "body": document, "more_body": False})

    def _sign_in_offered(self, priced: Priced) -> bool:
        return self.sign_in and priced.route.is_article

    def _extensions(self, priced: Priced) -> dict[str, Any]:
        extensions: dict[str, Any] = {}
        if self._sign_in_offered(priced) and self.receipts is not None:
            extensions[SIGN_IN_WITH_X] = declare_sign_in(
                priced.resource.url, priced.requirements.network, self.receipts
            )
        declared = self._declaration(priced)
        if declared is not None:
            extensions[BAZAAR] = declared
        if priced.upto is not None:
            # The facilitator sponsors the payer's one-time Permit2 approval either way.
            for key in (EIP2612_KEY, ERC20_APPROVAL_KEY):
                extensions[key] = {"info": {"version": "1"}}
        return extensions

    def _declaration(self, priced: Priced) -> Mapping[str, Any] | None:
        """The route's bazaar declaration, or the tool's when it is sold as one."""
        if self.discovery is None:
            return None
        if priced.tool is not None:
            return priced.tool.bazaar
        return self.discovery.declaration(priced.route.route.path, priced.method)

    def declared(self, priced: Priced, payload: _Payment) -> _Payment:
        """``payload`` carrying this 402's resource and bazaar declaration to the facilitator.

        The seller's own words, never the buyer's echo: a facilitator with a
        catalog (``farthing facilitator serve``) lists what it settles from them
        (an ``exact`` payment, or a channel's deposit).
        """
        declared = self._declaration(priced)
        if declared is None:
            return payload
        resource = self._challenge_wire(priced, None)["resource"]
        return replace(payload, declared={"resource": resource, "extensions": {BAZAAR: declared}})

    def _challenge_wire(self, priced: Priced, reason: str | None) -> dict[str, Any]:
        """The PaymentRequired object, with the site's service metadata on ``resource``."""
        wire = priced.challenge(reason).to_wire()
        if self.discovery is not None:
            wire["resource"] = {**wire["resource"], **self.discovery.resource_metadata()}
            if priced.tool is not None:
                wire["resource"]["url"] = priced.tool.url
        return wire

    def challenge_header(self, priced: Priced, reason: str | None) -> str:
        """The ``PAYMENT-REQUIRED`` header value of ``priced`` (for answers other than 402)."""
        return self._challenge_header(priced, reason)

    def _challenge_header(self, priced: Priced, reason: str | None) -> str:
        extensions = self._extensions(priced)
        wire = self._challenge_wire(priced, reason)
        if not extensions:
            return b64_json(wire)
        return b64_json({**wire, "extensions": extensions})

    async def send_402(
        self,
        send: Send,
        priced: Priced,
        reason: str | None,
        detail: str,
        extra: Mapping[str, Any] | None = None,
        settlement: SettleResult | None = None,
    ) -> None:
        """402 with ``PAYMENT-REQUIRED`` (and ``PAYMENT-RESPONSE`` of a refused settlement)."""
        requirements = priced.requirements
        extensions = self._extensions(priced)
        message = (
            f"{detail} This resource costs {priced.quote.describe()}, paid to "
            f"{requirements.pay_to} on {requirements.network} with an x402 v2 client "
            f"(scheme exact, header {PAYMENT_REQUIRED_HEADER})."
        )
        body: dict[str, Any] = {
            **self._challenge_wire(priced, reason),
            "message": message,
            "price": _price_terms(priced.quote),
        }
        if reason is None:
            body["error"] = "payment_required"
        if extensions:
            body["extensions"] = extensions
        body.update(extra or {})
        headers = [
            (PAYMENT_REQUIRED_HEADER.encode(), self._challenge_header(priced, reason).encode())
        ]
        if settlement is not None:
            headers.append((PAYMENT_RESPONSE_HEADER.encode(), settlement.header().encode()))
        await send_json(send, 402, body, headers)


def _is_html(media_type: str) -> bool:
    kind = media_type.split(";", 1)[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")


def decode_text(body: bytes, media_type: str) -> str | None:
    """A body as text in its ``media_type``'s charset (UTF-8 if none); None if it is not."""
    charset = "utf-8"
    for part in media_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        return body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None


def _price_terms(quote: Quote) -> dict[str, Any]:
    terms: dict[str, Any] = {
        "amount": str(quote.amount),
        "display": quote.asset.format(quote.amount),
        "asset": quote.asset.address,
        "network": quote.asset.network,
    }
    if quote.fiat_currency is not None:
        terms["fiatCurrency"] = quote.fiat_currency
        terms["fiatAmount"] = str(quote.fiat_amount)
        terms["fiatRate"] = str(quote.fiat_rate)
    return terms
