"""``PaywallMiddleware``: x402 v2 in front of any ASGI app, as pure ASGI.

First, every HTTP request's path is made canonical (``farthing.paywall.edge.paths``:
dot segments removed, empty segments dropped, encoded dot, slash and backslash
refused with 400) and its method upper-cased; routes match that, and exactly
that is what the app receives. On a paid path, a method no route charges for
never reaches the content: ``HEAD`` gets the challenge without a body,
``OPTIONS`` only the app's status and headers, anything else 405.

For a request that matches a :class:`~farthing.paywall.edge.routes.PaidRoute`:

1. no ``PAYMENT-SIGNATURE`` → 402 with ``PAYMENT-REQUIRED`` and a JSON body of
   the same terms and a human message; an article route runs its handler,
   buffers the answer and puts only the free preview in that body;
2. a header that cannot be decoded → 400 with a reason;
3. verify (the facilitator) → 402 with the reason on refusal, 503 when the
   chain or facilitator does not answer (the handler is not run);
4. claim the authorization's nonce in the payment database: a second request
   with the same payment, in any process sharing the database, never reaches
   the handler: while a live request is settling it, 503
   ``payment_in_progress`` with ``Retry-After`` (retry the same header); once
   it is done, 402 ``nonce_already_used``;
5. run the handler with its response **buffered**: nothing of it reaches the
   client yet. An exception or a non-2xx answer releases the claim unsettled;
6. settle; only on success is the buffered response sent, with
   ``PAYMENT-RESPONSE``. A refused settlement is a 402 with the reason; an
   unknown outcome (a timeout) is a 503 ``settlement_pending``, recorded as
   pending and resolved from the chain; the payer retries with the *same*
   payment header and is never asked to pay twice;
7. book the revenue (idempotently; a failure leaves it for the sweep).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final, cast

import anyio
import anyio.to_thread

from farthing.faults import crash_point
from farthing.invariant import invariant
from farthing.paywall.edge.metadata import free_metadata
from farthing.paywall.edge.nonces import UsedSignIns
from farthing.paywall.edge.page import (
    ASSET_PATHS,
    PREVIEW_SELECTORS_DEFAULT,
    asset,
    network_label,
    page_headers,
    render_page,
    wants_html,
)
from farthing.paywall.edge.paths import PathRefusal, canonical_path, encode_path
from farthing.paywall.edge.preview import split_preview
from farthing.paywall.edge.pricing import Quote, Rounding
from farthing.paywall.edge.receipts import Receipt, Receipts
from farthing.paywall.edge.routes import PaidRoute, PriceRequest, ResolvedRoute, RouteTable
from farthing.paywall.edge.sign_in import (
    SIGN_IN_WITH_X,
    SignInRefusal,
    check_sign_in,
    declare_sign_in,
    has_paid,
)
from farthing.paywall.edge.websocket import refuse_websocket
from farthing.paywall.errors import (
    FacilitatorUnavailableError,
    PaymentStoreError,
    PaywallConfigError,
)
from farthing.paywall.facilitator.local import Facilitator, ResolvingFacilitator
from farthing.paywall.records.books import (
    ChannelAsset,
    ChannelRevenueBook,
    RevenueBook,
    SettledPayment,
)
from farthing.paywall.records.store import (
    CLAIM_LEASE_S_DEFAULT,
    PaymentKey,
    PaymentRecord,
    PaymentState,
    PaymentStore,
)
from farthing.paywall.schemes.batch_settlement.server import (
    CHARGE_HEADER,
    ChannelOptions,
    ChannelPaywall,
)
from farthing.paywall.schemes.batch_settlement.types import (
    ChannelPayment,
    ChannelRequirements,
    decode_channel_payment,
)
from farthing.paywall.wire import (
    PAYMENT_HEADER_BYTES_MAX,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    MalformedPayment,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResult,
    b64_json,
    decode_payment_signature,
    unb64_json_bounded,
)
from farthing.wallet.eip712 import verify_authorization_signature
from farthing.wallet.money import Asset

__all__ = ["RESPONSE_BODY_BYTES_MAX_DEFAULT", "PaywallMiddleware", "PaywallOptions"]

RESPONSE_BODY_BYTES_MAX_DEFAULT: Final = 32 * 1024 * 1024
_EXPOSE: Final = f"{PAYMENT_REQUIRED_HEADER}, {PAYMENT_RESPONSE_HEADER}"
# Scope extensions that would let a handler write around the buffer.
_UNBUFFERED_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopy")
_INT63_MAX: Final = 2**63 - 1
_FINAL_REFUSALS: Final = (PaymentState.FAILED, PaymentState.EXPIRED)
_RETRY_SAME_HEADER: Final = (
    "The payment was sent to the chain but its outcome is not known yet. Retry with the "
    "same payment header: it will not be charged twice. Do not sign a new payment."
)

log = logging.getLogger("farthing.paywall")

Send = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class PaywallOptions:
    """Everything the middleware needs, built and passed in (no globals)."""

    routes: Sequence[PaidRoute]
    facilitator: Facilitator
    store: PaymentStore
    books: RevenueBook | None = None
    pay_to: str | None = None
    asset: Asset | None = None
    rates: Mapping[str, Decimal | str] = field(default_factory=dict)
    rounding: Rounding = "exact"
    # The site's origin: the base of resource URLs (else the Host header, which
    # farthing paywall serve restricts with HostGuard) and what sign-ins must name.
    public_url: str | None = None
    payment_header_bytes_max: int = PAYMENT_HEADER_BYTES_MAX
    response_body_bytes_max: int = RESPONSE_BODY_BYTES_MAX_DEFAULT
    # Buy once, read again (article routes): a signed receipt cookie after
    # payment and x402 sign-in-with-x; None turns both off. Sign-in also needs
    # public_url: its messages name the configured origin, never the Host header.
    receipts: Receipts | None = None
    sign_in: bool = True
    preview_selectors: tuple[str, ...] = PREVIEW_SELECTORS_DEFAULT  # the article element
    # How long a nonce claim is its request's own without renewal: it must
    # cover the handler, and (renewed before settling) the facilitator's
    # receipt wait. After it, a retry or the sweep may take the payment over.
    claim_lease_s: float = CLAIM_LEASE_S_DEFAULT
    # x402 batch-settlement (farthing.paywall.schemes.batch_settlement.server): routes whose
    # schemes include it need these.
    channels: ChannelOptions | None = None

    def __post_init__(self) -> None:
        if not 1.0 <= self.claim_lease_s <= 24 * 3600:
            raise PaywallConfigError("claim_lease_s must be between 1 s and 24 h")


@dataclass(slots=True)
class _Buffered:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    charge: str | None = None  # the handler's Farthing-Charge header, stripped


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Priced:
    route: ResolvedRoute
    quote: Quote
    requirements: PaymentRequirements
    resource: ResourceInfo
    channel: ChannelRequirements | None = None

    def challenge(self, error: str | None) -> PaymentRequired:
        offers: dict[str, Any] = {"exact": self.requirements, "batch-settlement": self.channel}
        accepts = tuple(
            offers[s] for s in self.route.schemes if offers.get(s) is not None
        )  # a ChannelRequirements serializes like an exact entry: only to_wire() is used
        return PaymentRequired(self.resource, cast(Any, accepts), error)


class PaywallMiddleware:
    """Charge for routes with x402 v2; see the module docstring for the order of events."""

    def __init__(self, app: Any, *, options: PaywallOptions) -> None:
        if not isinstance(options, PaywallOptions):
            raise PaywallConfigError("options must be a PaywallOptions")
        if not isinstance(options.facilitator, Facilitator):
            raise PaywallConfigError(
                "options.facilitator must implement verify, settle and supported"
            )
        if not isinstance(options.store, PaymentStore):
            raise PaywallConfigError("options.store must be a PaymentStore")
        if options.books is not None and not isinstance(options.books, RevenueBook):
            raise PaywallConfigError("options.books must implement record_settlement")
        if not 1024 <= options.payment_header_bytes_max <= 1024 * 1024:
            raise PaywallConfigError("payment_header_bytes_max must be between 1 KiB and 1 MiB")
        if options.response_body_bytes_max < 1:
            raise PaywallConfigError("response_body_bytes_max must be positive")
        if options.public_url is not None and not options.public_url.startswith(
            ("http://", "https://")
        ):
            raise PaywallConfigError("public_url must start with http:// or https://")
        self.app = app
        self.options = options
        self.routes = RouteTable(
            options.routes,
            pay_to=options.pay_to,
            asset=options.asset,
            rates=options.rates,
            rounding=options.rounding,
        )
        self.facilitator = options.facilitator
        self.store = options.store
        self.books = options.books
        self.channels = (
            ChannelPaywall(
                options.channels,
                options.facilitator,
                books=options.books if isinstance(options.books, ChannelRevenueBook) else None,
            )
            if options.channels is not None
            else None
        )
        if self.channels is None and any("batch-settlement" in r.schemes for r in self.routes):
            raise PaywallConfigError("a batch-settlement route needs PaywallOptions.channels")
        self.used_sign_ins: UsedSignIns | None = None
        if self.sign_in_off_reason is None:
            self.used_sign_ins = UsedSignIns(
                options.store.engine,
                dialect=options.store.dialect,
                display_url=options.store.display_url,
            )
        elif options.receipts is not None and options.sign_in:
            log.info("%s", self.sign_in_off_reason)

    @property
    def sign_in_off_reason(self) -> str | None:
        """Why x402 sign-in-with-x is not offered (one line), or None when it is."""
        if self.options.receipts is None or not self.options.sign_in:
            return "sign-in-with-x is off: receipts or sign-in are turned off"
        if not self.options.public_url:
            return (
                "sign-in-with-x is off: set public_url (--public-url) to the site's address; "
                "sign-in messages must name the configured origin, never the request's Host"
            )
        if not any(route.is_article for route in self.routes):
            return "sign-in-with-x is off: no article route (preview_fraction or preview_blocks) to read again"
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan" and self._claims_in_background():
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = canonical_path(scope)
        if isinstance(path, PathRefusal):
            await _send_json(send, 400, {"error": path.reason, "message": path.message})
            return
        # From here on there is one path and one method: what is matched is
        # exactly what the app (or the proxy's upstream) receives.
        method = str(scope["method"]).upper()
        scope = {**scope, "path": path, "raw_path": encode_path(path), "method": method}
        route = self.routes.match(method, path)
        if path in ASSET_PATHS and method in ("GET", "HEAD"):
            await _send_asset(send, path, head=method == "HEAD")
            return
        if route is not None and route.is_article and self.options.receipts is not None:
            if await self._owned(scope, receive, send, route):
                return
            send = self._with_receipt(scope, send)
        if route is None:
            await self._unpriced_method(scope, receive, send, path)
            return
        priced = await self._price(scope, route)
        header = _header(scope, b"payment-signature")
        if header is None:
            await self._challenge(scope, receive, send, priced)
            return
        if self.channels is not None and "batch-settlement" in route.schemes:
            channel = decode_channel_payment(
                header, bytes_max=self.options.payment_header_bytes_max
            )
            if isinstance(channel, MalformedPayment):
                await _send_json(
                    send,
                    400,
                    {"x402Version": 2, "error": channel.reason, "message": channel.message},
                )
                return
            if channel is not None:
                try:
                    await self._paid_channel(scope, receive, send, priced, channel)
                except FacilitatorUnavailableError as exc:
                    await _send_unavailable(send, "facilitator_unavailable", str(exc))
                except PaymentStoreError as exc:
                    await _send_unavailable(send, "payment_database_unavailable", str(exc))
                return
        decoded = decode_payment_signature(header, bytes_max=self.options.payment_header_bytes_max)
        if not isinstance(decoded, MalformedPayment) and "exact" not in route.schemes:
            await self._send_402(
                send, priced, "unsupported_scheme", "This route is paid through a channel only."
            )
            return
        if isinstance(decoded, MalformedPayment):
            await _send_json(
                send,
                400,
                {"x402Version": 2, "error": decoded.reason, "message": decoded.message},
            )
            return
        try:
            await self._paid(scope, receive, send, priced, decoded)
        except FacilitatorUnavailableError as exc:
            await _send_unavailable(send, "facilitator_unavailable", str(exc))
        except PaymentStoreError as exc:
            await _send_unavailable(send, "payment_database_unavailable", str(exc))

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        """A stream cannot be paid for: a paid path's WebSocket is closed, the app never runs.

        A free path's reaches the app, with the canonical path like any request.
        """
        path = canonical_path(scope)
        if isinstance(path, PathRefusal) or self.routes.methods_at(path):
            await refuse_websocket(receive, send)
            return
        await self.app({**scope, "path": path, "raw_path": encode_path(path)}, receive, send)

    def _claims_in_background(self) -> bool:
        options = self.options.channels
        return self.channels is not None and options is not None and options.claim_in_background

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        """The app's lifespan, with the channel claimer running for as long as it does."""
        assert self.channels is not None
        async with anyio.create_task_group() as group:
            group.start_soon(self.channels.claimer.run)
            try:
                await self.app(scope, receive, send)
            finally:
                group.cancel_scope.cancel()

    async def _unpriced_method(
        self, scope: dict[str, Any], receive: Any, send: Send, path: str
    ) -> None:
        """A method no route charges for: free paths pass; a paid path never leaks content.

        ``HEAD`` on a path sold by ``GET`` gets the ``GET`` challenge without a
        body (it can learn the price, never pay or read); ``OPTIONS`` reaches
        the app (CORS preflights) but only its status and its ``Allow``,
        ``Vary`` and ``Access-Control-*`` headers come back;
        any other method is refused with 405 before the app sees it.
        """
        charged = self.routes.methods_at(path)
        if not charged:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        allowed = sorted(charged | ({"HEAD"} if "GET" in charged else set()) | {"OPTIONS"})
        if method == "HEAD" and "GET" in charged:
            as_get = {**scope, "method": "GET"}
            route = self.routes.match("GET", path)
            if route is not None:  # pragma: no branch - "GET" in charged
                priced = await self._price(as_get, route)
                await self._send_402(_without_body(send), priced, None, "Payment required.")
                return
        if method == "OPTIONS":
            try:
                buffered = await self._run_buffered(scope, receive)
            except _BodyTooLarge:
                buffered = _Buffered(status=204)
            # Only what a preflight needs goes back: a careless upstream that
            # answers OPTIONS like GET must not leak the page in a header.
            headers = [(k, v) for k, v in buffered.headers if _preflight_header(k)]
            headers.append((b"content-length", b"0"))
            start = {"type": "http.response.start", "status": buffered.status, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await _send_json(
            send,
            405,
            {
                "error": "method_not_allowed",
                "message": f"{method} is not sold here; this path is paid with "
                f"{', '.join(sorted(charged))}.",
            },
            [(b"allow", ", ".join(allowed).encode())],
        )

    # ------------------------------------------------------------ pricing and the 402

    async def _price(self, scope: dict[str, Any], route: ResolvedRoute) -> _Priced:
        request = PriceRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])},
        )
        quote = await route.quote(request)
        requirements = route.requirements(quote)
        resource = ResourceInfo(
            url=self._resource_url(scope),
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
        return _Priced(route, quote, requirements, resource, channel)

    def _resource_url(self, scope: dict[str, Any]) -> str:
        path = str(scope["path"])  # ASGI: the full path, root_path included
        if self.options.public_url:
            return self.options.public_url.rstrip("/") + path
        host = _header(scope, b"host") or "localhost"
        return f"{scope.get('scheme', 'http')}://{host}{path}"

    async def _challenge(
        self, scope: dict[str, Any], receive: Any, send: Send, priced: _Priced
    ) -> None:
        extra: dict[str, Any] = {}
        page = scope["method"] == "GET" and wants_html(_header(scope, b"accept"))
        if priced.route.is_article:
            try:
                buffered = await self._run_buffered(scope, receive)
            except _BodyTooLarge:
                await _send_json(send, 500, {"error": "response_too_large"})
                return
            if not 200 <= buffered.status < 300:
                await _send_buffered(send, buffered, [])
                return
            media_type = _header_of(buffered.headers, b"content-type") or "text/html"
            text = _decode(bytes(buffered.body), media_type)
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
        await self._send_402(send, priced, None, "Payment required.", extra)

    async def _send_page(
        self,
        send: Send,
        priced: _Priced,
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
            selectors=self.options.preview_selectors,
            title=priced.route.route.description or "Payment required",
        ).encode("utf-8")
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(document)).encode()),
            (b"cache-control", b"no-store"),
            # The site's own policies (our script is same-origin) or ours, never framed.
            *page_headers(site_headers),
            (b"access-control-expose-headers", _EXPOSE.encode()),
            (PAYMENT_REQUIRED_HEADER.encode(), self._challenge_header(priced, None).encode()),
        ]
        await send({"type": "http.response.start", "status": 402, "headers": headers})
        await send({"type": "http.response.body", "body": document, "more_body": False})

    def _sign_in_offered(self, priced: _Priced) -> bool:
        return self.used_sign_ins is not None and priced.route.is_article

    def _extensions(self, priced: _Priced) -> dict[str, Any]:
        if not self._sign_in_offered(priced) or self.options.receipts is None:
            return {}
        declared = declare_sign_in(
            priced.resource.url, priced.requirements.network, self.options.receipts
        )
        return {SIGN_IN_WITH_X: declared}

    def _challenge_header(self, priced: _Priced, reason: str | None) -> str:
        extensions = self._extensions(priced)
        challenge = priced.challenge(reason)
        if not extensions:
            return challenge.header()
        return b64_json({**challenge.to_wire(), "extensions": extensions})

    # ------------------------------------------------------------ buy once, read again

    async def _owned(
        self, scope: dict[str, Any], receive: Any, send: Send, route: ResolvedRoute
    ) -> bool:
        """Serve an article its reader already bought: a receipt cookie or a sign-in proves it."""
        receipts = self.options.receipts
        if receipts is None:  # pragma: no cover - checked by the caller
            return False
        path = scope["path"]
        token = _cookie(scope, receipts.cookie_name(path))
        if token is not None and isinstance(receipts.check(token, path), Receipt):
            await self.app(scope, receive, _private_answer(send, []))
            return True
        header = _header(scope, SIGN_IN_WITH_X.encode())
        used = self.used_sign_ins
        if header is None or used is None:
            return False
        signed = check_sign_in(
            header,
            resource_url=self._resource_url(scope),
            network=route.asset.network,
            receipts=receipts,
        )
        if isinstance(signed, SignInRefusal):
            log.info("sign-in refused for %s: %s", path, signed.reason)
            return False
        try:
            paid = await self._store(has_paid, self.store, path, signed.address)
            # Spent only by a sign-in that opens something: a wallet that never
            # paid stores nothing; one spend per header across every replica.
            first = paid and await self._store(used.first_use, signed.nonce, signed.fresh_until_s)
        except PaymentStoreError as exc:
            await _send_unavailable(send, "payment_database_unavailable", str(exc))
            return True
        if not first:
            if paid:
                log.info("sign-in refused for %s: invalid_siwx_nonce_reused", path)
            return False
        cookie = receipts.set_cookie(path, signed.address, secure=self._secure(scope))
        await self.app(scope, receive, _private_answer(send, [(b"set-cookie", cookie)]))
        return True

    def _with_receipt(self, scope: dict[str, Any], send: Send) -> Send:
        """``send`` that adds a receipt cookie to a settled, paid answer for this article."""
        receipts = self.options.receipts
        if receipts is None:  # pragma: no cover - checked by the caller
            return send
        path = scope["path"]
        secure = self._secure(scope)

        async def with_receipt(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                settled = _header_of(
                    message.get("headers", []), PAYMENT_RESPONSE_HEADER.lower().encode()
                )
                payer = _settled_payer(settled)
                if payer is not None:
                    cookie = receipts.set_cookie(path, payer, secure=secure)
                    headers = [*message.get("headers", []), (b"set-cookie", cookie)]
                    message = {**message, "headers": headers}
            await send(message)

        return with_receipt

    def _secure(self, scope: dict[str, Any]) -> bool:
        base = self.options.public_url or f"{scope.get('scheme', 'http')}://"
        return base.startswith("https://")

    async def _send_402(
        self,
        send: Send,
        priced: _Priced,
        reason: str | None,
        detail: str,
        extra: Mapping[str, Any] | None = None,
        settlement: SettleResult | None = None,
    ) -> None:
        challenge = priced.challenge(reason)
        requirements = priced.requirements
        extensions = self._extensions(priced)
        message = (
            f"{detail} This resource costs {priced.quote.describe()}, paid to "
            f"{requirements.pay_to} on {requirements.network} with an x402 v2 client "
            f"(scheme exact, header {PAYMENT_REQUIRED_HEADER})."
        )
        body: dict[str, Any] = {
            **challenge.to_wire(),
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
        await _send_json(send, 402, body, headers)

    # ------------------------------------------------------------ batch-settlement

    async def _paid_channel(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: _Priced,
        payment: ChannelPayment,
    ) -> None:
        """A channel payment (farthing.paywall.schemes.batch_settlement.server decides; this sends)."""
        channels, offer = self.channels, priced.channel
        invariant(channels is not None and offer is not None, "the route offers a channel")
        assert channels is not None and offer is not None

        async def run() -> _Buffered:
            try:
                return await self._run_buffered(scope, receive)
            except _BodyTooLarge:
                return _Buffered(status=500, body=bytearray(b'{"error":"response_too_large"}'))

        quoted = priced.quote.asset
        asset = ChannelAsset(offer.network, offer.asset, quoted.decimals, quoted.symbol)
        reply, buffered = await channels.handle(offer, payment, run, asset=asset)
        if reply.status == 402:
            if reply.corrective is not None:
                corrected = replace(offer, extra={**offer.extra, **reply.corrective})
                priced = replace(priced, channel=corrected)
            reason = reply.reason or "invalid_payment"
            detail = f"The payment was refused: {reply.detail or reason}."
            await self._send_402(send, priced, reason, detail)
            return
        header = (
            [(PAYMENT_RESPONSE_HEADER.encode(), reply.payment_response.encode())]
            if reply.payment_response is not None
            else []
        )
        if reply.body is not None:
            await _send_json(send, reply.status, reply.body, header)
            return
        assert buffered is not None
        # A held charge becomes final once the answer is handed to the server.
        await channels.deliver(reply, lambda: _send_buffered(send, buffered, header))

    # ------------------------------------------------------------ the paid path

    async def _paid(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: _Priced,
        payload: PaymentPayload,
    ) -> None:
        requirements = priced.requirements
        auth = payload.authorization
        key = PaymentKey(
            requirements.network, requirements.asset, auth.from_address, "0x" + auth.nonce.hex()
        )
        known = await self._store(self.store.get, key)
        if known is not None and _unowned(known):
            # Pending, or its owner's lease ran out (it died, or stalled):
            # finish it from the chain instead of refusing the payer.
            await self._resume_pending(scope, receive, send, priced, payload, key)
            return
        if known is not None and _in_progress(known):
            await self._send_in_progress(send, known)
            return
        if known is not None and known.state != PaymentState.RELEASED:
            # A refused settlement keeps its reason; anything else was used.
            reason = (
                known.reason
                if known.state in _FINAL_REFUSALS and known.reason
                else "nonce_already_used"
            )
            await self._send_402(send, priced, reason, "This payment cannot be used again.")
            return
        verified = await self.facilitator.verify(payload, requirements)
        if not verified.valid:
            reason = verified.reason or "invalid_payment"
            await self._send_402(
                send, priced, reason, f"The payment was refused: {verified.message or reason}."
            )
            return
        crash_point("paywall.after_verify")
        claim = await self._store(
            self.store.claim,
            self._record(key, priced, payload),
            lease_s=self.options.claim_lease_s,
        )
        if not claim.won:
            if claim.existing is not None and _in_progress(claim.existing):
                await self._send_in_progress(send, claim.existing)
                return
            await self._send_402(
                send, priced, "nonce_already_used", "This payment was already used."
            )
            return
        crash_point("paywall.after_claim")
        await self._serve_and_settle(scope, receive, send, priced, payload, key, claim.owner)

    async def _send_in_progress(self, send: Send, record: PaymentRecord) -> None:
        """503 for a copy of a payment another live request is settling right now.

        Not a 402: the payment is neither refused nor spent on something else,
        and a payer told ``nonce_already_used`` might book it as paid without
        the content. Retrying the same header after the lease gets the content
        (or, once delivered elsewhere, a 402).
        """
        left_ns = (record.lease_until_ns or 0) - time.time_ns()
        wait_s = max(1, min(int(self.options.claim_lease_s), -(-left_ns // 1_000_000_000)))
        await _send_json(
            send,
            503,
            {
                "error": "payment_in_progress",
                "message": "Another request is settling this payment. Retry with the same "
                f"payment header in {wait_s} s; do not sign a new payment.",
            },
            [(b"retry-after", str(wait_s).encode())],
        )

    async def _resume_pending(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: _Priced,
        payload: PaymentPayload,
        key: PaymentKey,
    ) -> None:
        """A retry of a payment nobody is finishing: take it over, read the chain first.

        The row is pending (the outcome was unknown), claimed by an owner whose
        lease ran out (it died mid-way), or settled but never delivered.
        """
        known = await self._store(self.store.get, key)
        if known is None:
            await self._send_402(send, priced, "nonce_already_used", "This payment is unknown.")
            return
        # The key (payer, nonce) is public on-chain: only the payer's own
        # signed authorization for these terms may collect what it paid for.
        signed = payload.signed(priced.requirements.domain())
        if not verify_authorization_signature(signed, payload.payer).valid:
            await self._send_402(
                send, priced, "invalid_signature", "The signature does not verify."
            )
            return
        auth = payload.authorization
        if auth.value != known.amount or auth.to.lower() != known.pay_to.lower():
            await self._send_402(
                send, priced, "nonce_already_used", "This nonce paid for something else."
            )
            return
        claim = await self._store(self.store.take_over, key, lease_s=self.options.claim_lease_s)
        if not claim.won or claim.existing is None:
            if claim.existing is not None and _in_progress(claim.existing):
                await self._send_in_progress(send, claim.existing)
                return
            await self._send_402(
                send, priced, "nonce_already_used", "This payment is already being settled."
            )
            return
        record = claim.existing
        owner = claim.owner
        terms = replace(priced.requirements, amount=record.amount, pay_to=record.pay_to)
        if record.state == PaymentState.SETTLED:
            settled = SettleResult(
                True,
                key.network,
                record.tx_hash or "",
                payload.payer,
                record.amount,
                block_number=record.block_number,
            )
            await self._deliver(scope, receive, send, priced, payload, record, owner, settled)
            return
        if isinstance(self.facilitator, ResolvingFacilitator):
            try:
                resolved = await self.facilitator.resolve(
                    terms, payload.payer, auth.nonce, record.tx_hash
                )
            except FacilitatorUnavailableError:
                await self._store(
                    self.store.mark_pending,
                    key,
                    owner,
                    reason="settlement_unknown",
                    tx_hash=record.tx_hash,
                )
                raise
            if resolved is not None:
                await self._settled(scope, receive, send, priced, payload, record, owner, resolved)
                return
            if time.time() > record.valid_before:
                # Unused and past validBefore: it can never move money any more.
                await self._store(self.store.mark_expired, key, owner)
                await self._send_402(
                    send, priced, "authorization_expired", "The payment expired unused."
                )
                return
        # The nonce is unused on-chain (or the facilitator resolves on its own):
        # serve and settle; the facilitator re-reads the nonce before resubmitting.
        await self._serve_and_settle(scope, receive, send, priced, payload, key, owner)

    async def _serve_and_settle(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: _Priced,
        payload: PaymentPayload,
        key: PaymentKey,
        owner: str,
    ) -> None:
        try:
            buffered = await self._run_buffered(scope, receive)
        except _BodyTooLarge:
            await self._store(self.store.release, key, owner)
            await _send_json(send, 500, {"error": "response_too_large"})
            return
        except BaseException:
            # The handler failed: give the claim back unsettled, then let the
            # server report the error as it would without a paywall.
            with anyio.CancelScope(shield=True):
                await self._store(self.store.release, key, owner)
            raise
        if not 200 <= buffered.status < 300:
            await self._store(self.store.release, key, owner)
            await _send_buffered(send, buffered, [])
            return
        crash_point("paywall.after_handler")
        # A fresh lease for the settlement: a live owner is never taken over
        # while its transaction waits for a receipt.
        renewed = await self._store(
            self.store.renew, key, owner, lease_s=self.options.claim_lease_s
        )
        if not renewed:
            # Our lease ran out during the handler and someone took the payment
            # over: it is theirs to settle now; we send nothing.
            await _send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
            return
        try:
            settled = await self.facilitator.settle(payload, priced.requirements)
        except FacilitatorUnavailableError:
            # It may or may not have been sent: pending, resolved from the chain.
            await self._store(
                self.store.mark_pending, key, owner, reason="settlement_unknown", tx_hash=None
            )
            raise
        crash_point("paywall.after_receipt")
        record = self._record(key, priced, payload)
        if not settled.success and not settled.pending:
            # Refused or reverted: perhaps because an earlier owner's transaction,
            # still in flight when we resubmitted, used the nonce first (even in
            # the same block). The chain decides: if it paid us, this is settled.
            resolved = None
            if isinstance(self.facilitator, ResolvingFacilitator):
                try:
                    resolved = await self.facilitator.resolve(
                        priced.requirements, payload.payer, payload.authorization.nonce, None
                    )
                except FacilitatorUnavailableError:
                    resolved = None
            if resolved is not None:
                settled = resolved
            elif settled.reason == "nonce_already_used":
                # Used, by whom is not known here (a remote facilitator, or an
                # unmined transaction): pending, for the sweep to read the chain.
                settled = _unknown(settled)
        await self._settled(scope, receive, send, priced, payload, record, owner, settled, buffered)

    async def _settled(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: _Priced,
        payload: PaymentPayload,
        record: PaymentRecord,
        owner: str,
        settled: SettleResult,
        buffered: _Buffered | None = None,
    ) -> None:
        """Record a settlement's outcome (ours only while we own the row), then answer."""
        key = record.key
        if settled.success:
            marked = await self._store(
                self.store.mark_settled,
                key,
                owner,
                tx_hash=settled.transaction,
                block_number=settled.block_number,
            )
            if not marked:
                # Taken over meanwhile: the new owner resolves the same
                # settlement from the chain and delivers it once.
                await _send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
                return
            crash_point("paywall.after_mark")
            await self._deliver(
                scope, receive, send, priced, payload, record, owner, settled, buffered
            )
            return
        if settled.pending:
            await self._store(
                self.store.mark_pending,
                key,
                owner,
                reason=settled.reason or "settlement_pending",
                tx_hash=settled.transaction or None,
            )
            await _send_unavailable(
                send,
                "settlement_pending",
                _RETRY_SAME_HEADER,
                [(PAYMENT_RESPONSE_HEADER.encode(), settled.header().encode())],
            )
            return
        await self._store(
            self.store.mark_failed, key, owner, reason=settled.reason or "settlement_failed"
        )
        await self._send_402(
            send,
            priced,
            settled.reason or "settlement_failed",
            f"The payment could not be settled: {settled.message or settled.reason}.",
            settlement=settled,
        )

    async def _deliver(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: _Priced,
        payload: PaymentPayload,
        record: PaymentRecord,
        owner: str,
        settled: SettleResult,
        buffered: _Buffered | None = None,
    ) -> None:
        """Book a settled payment (idempotently), then send its content once."""
        if not record.booked:
            await self._book(priced, payload, record.key, settled, record)
        crash_point("paywall.after_book")
        if buffered is None:
            try:
                buffered = await self._run_buffered(scope, receive)
            except BaseException:
                # Paid but not served: the payer's next retry gets it.
                with anyio.CancelScope(shield=True):
                    await self._store(self.store.give_back, record.key, owner)
                raise
        if not 200 <= buffered.status < 300:
            await self._store(self.store.give_back, record.key, owner)
            await _send_buffered(send, buffered, [])
            return
        await _send_buffered(send, buffered, _paid_headers(settled))
        await self._store(self.store.mark_delivered, record.key, owner)

    # ------------------------------------------------------------ helpers

    def _record(self, key: PaymentKey, priced: _Priced, payload: PaymentPayload) -> PaymentRecord:
        auth = payload.authorization
        return PaymentRecord(
            key=key,
            state=PaymentState.CLAIMED,
            owner="",
            pay_to=priced.requirements.pay_to,
            amount=priced.requirements.amount,
            route=priced.route.route.path,
            resource=priced.resource.url,
            valid_after=min(auth.valid_after, _INT63_MAX),
            valid_before=min(auth.valid_before, _INT63_MAX),
            fiat_currency=priced.quote.fiat_currency,
            fiat_rate=priced.quote.fiat_rate,
        )

    async def _store(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: method(*args, **kwargs))

    async def _book(
        self,
        priced: _Priced,
        payload: PaymentPayload,
        key: PaymentKey,
        settled: SettleResult,
        record: PaymentRecord | None = None,
    ) -> None:
        if self.books is None:
            return
        books = self.books
        auth = payload.authorization
        asset = priced.quote.asset
        # The terms the payment was claimed at, should the route's price have changed since.
        terms = record or self._record(key, priced, payload)
        payment = SettledPayment(
            network=key.network,
            token=key.token,
            decimals=asset.decimals,
            symbol=asset.symbol,
            payer=key.payer,
            pay_to=terms.pay_to,
            nonce=key.nonce,
            amount=terms.amount,
            tx_hash=settled.transaction,
            block_number=settled.block_number,
            route=priced.route.route.path,
            resource=priced.resource.url,
            valid_after=auth.valid_after,
            valid_before=auth.valid_before,
            fiat_currency=priced.quote.fiat_currency,
            fiat_rate=priced.quote.fiat_rate,
        )
        try:
            result = await anyio.to_thread.run_sync(books.record_settlement, payment)
            if result.booked:
                await self._store(self.store.mark_booked, key)
            else:
                log.warning("revenue for %s not booked: %s", settled.transaction, result.reason)
        except Exception as exc:  # noqa: BLE001 - the payer paid: deliver; the sweep books it later
            log.warning("revenue for %s not booked yet: %s", settled.transaction, exc)

    async def _run_buffered(self, scope: dict[str, Any], receive: Any) -> _Buffered:
        """Run the app with every byte of its answer kept here, none sent."""
        buffered = _Buffered()
        limit = self.options.response_body_bytes_max
        inner = dict(scope)
        inner["extensions"] = {
            k: v
            for k, v in (scope.get("extensions") or {}).items()
            if k not in _UNBUFFERED_EXTENSIONS
        }

        async def capture(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                buffered.status = int(message["status"])
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
                # The handler's own charge (dynamic price) is for us, never the client.
                charge = CHARGE_HEADER.encode()
                buffered.charge = _header_of(headers, charge)
                buffered.headers = [(k, v) for k, v in headers if k.lower() != charge]
            elif kind == "http.response.body":
                buffered.body += message.get("body", b"")
                if len(buffered.body) > limit:
                    raise _BodyTooLarge()

        await self.app(inner, receive, capture)
        if buffered.status == 0:
            raise RuntimeError("the app finished without starting a response")
        return buffered


def _unowned(record: PaymentRecord) -> bool:
    """Nobody is finishing this payment: pending, or its owner's lease ran out undelivered."""
    if record.state == PaymentState.PENDING:
        return True
    if record.state not in (PaymentState.CLAIMED, PaymentState.SETTLED) or record.delivered:
        return False
    return record.lease_until_ns is None or record.lease_until_ns < time.time_ns()


def _in_progress(record: PaymentRecord) -> bool:
    """A live owner is settling or delivering this payment now."""
    if record.state not in (PaymentState.CLAIMED, PaymentState.SETTLED) or record.delivered:
        return False
    return not _unowned(record)


def _unknown(refused: SettleResult) -> SettleResult:
    """A settle refused as ``nonce_already_used`` while the chain shows the nonce unused:
    someone's transaction is in flight, so the outcome is pending, not failed."""
    return replace(refused, success=False, reason="settlement_pending", pending=True)


def _settled_payer(header: str | None) -> str | None:
    """The payer of a successful ``PAYMENT-RESPONSE``, else None."""
    if not header:
        return None
    data = unb64_json_bounded(header, bytes_max=PAYMENT_HEADER_BYTES_MAX)
    if not isinstance(data, dict) or data.get("success") is not True:
        return None
    payer = data.get("payer")
    return payer if isinstance(payer, str) and payer.startswith("0x") else None


def _cookie(scope: Mapping[str, Any], name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            key_text, sep, found = part.strip().partition("=")
            if sep and key_text == name:
                return found
    return None


def _private_answer(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` for an article served to its owner: never from a shared cache."""

    async def private(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
            ]
            headers += [(b"cache-control", b"private, no-store"), (b"vary", b"cookie"), *extra]
            message = {**message, "headers": headers}
        await send(message)

    return private


async def _send_asset(send: Send, path: str, *, head: bool) -> None:
    found = asset(path)
    if found is None:  # pragma: no cover - only called for ASSET_PATHS
        await _send_json(send, 404, {"error": "not_found"})
        return
    data, media_type = found
    headers = [
        (b"content-type", media_type),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"public, max-age=3600"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else data, "more_body": False})


def _preflight_header(name: bytes) -> bool:
    """Whether an app's answer to ``OPTIONS`` on a paid path may carry this header on."""
    lowered = name.lower()
    return lowered in (b"allow", b"vary", b"date") or lowered.startswith(b"access-control-")


def _without_body(send: Send) -> Send:
    """``send`` for a HEAD answer: the status and headers go out, the body does not."""

    async def head_only(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_only


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _header_of(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_html(media_type: str) -> bool:
    kind = media_type.split(";", 1)[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")


def _decode(body: bytes, media_type: str) -> str | None:
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


def _paid_headers(settled: SettleResult) -> list[tuple[bytes, bytes]]:
    return [(PAYMENT_RESPONSE_HEADER.encode(), settled.header().encode())]


async def _send_buffered(send: Send, buffered: _Buffered, extra: list[tuple[bytes, bytes]]) -> None:
    headers = list(buffered.headers)
    if extra:
        cache = _header_of(headers, b"cache-control")
        headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
        # Paid content must never be served from a shared cache to someone else.
        headers.append(
            (b"cache-control", b"private" if not cache else f"private, {cache}".encode())
        )
        headers.append((b"access-control-expose-headers", _EXPOSE.encode()))
        headers.extend(extra)
    await send({"type": "http.response.start", "status": buffered.status, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(buffered.body), "more_body": False})


async def _send_json(
    send: Send, status: int, body: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        (b"access-control-expose-headers", _EXPOSE.encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _send_unavailable(
    send: Send, reason: str, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await _send_json(
        send, 503, {"error": reason, "message": message}, [(b"retry-after", b"5"), *extra]
    )
