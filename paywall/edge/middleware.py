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

import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import anyio

from farthing.paywall.discovery.declaration import SiteDiscovery
from farthing.paywall.edge.asgi import Send, header, send_json, send_unavailable
from farthing.paywall.edge.challenge import Challenger
from farthing.paywall.edge.channel import serve_channel
from farthing.paywall.edge.nonces import UsedSignIns
from farthing.paywall.edge.owned import OwnedArticles
from farthing.paywall.edge.page import ASSET_PATHS, PREVIEW_SELECTORS_DEFAULT
from farthing.paywall.edge.paid import ExactPaidPath
from farthing.paywall.edge.paths import PathRefusal
from farthing.paywall.edge.pricing import Rounding
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.request import (
    canonical_request,
    send_asset,
    serve_unpriced,
    serve_websocket,
)
from farthing.paywall.edge.routes import PaidRoute, RouteTable
from farthing.paywall.edge.upto import UptoPaidPath
from farthing.paywall.errors import (
    FacilitatorUnavailableError,
    PaymentStoreError,
    PaywallConfigError,
)
from farthing.paywall.facilitator.local import Facilitator
from farthing.paywall.records.books import ChannelRevenueBook, RevenueBook
from farthing.paywall.records.store import CLAIM_LEASE_S_DEFAULT, PaymentStore
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions, ChannelPaywall
from farthing.paywall.schemes.batch_settlement.types import decode_channel_payment
from farthing.paywall.schemes.upto.facilitator import UptoSettling
from farthing.paywall.schemes.upto.wire import decode_upto_payment
from farthing.paywall.wire import (
    PAYMENT_HEADER_BYTES_MAX,
    MalformedPayment,
    decode_payment_signature,
)
from farthing.wallet.money import Asset

__all__ = ["RESPONSE_BODY_BYTES_MAX_DEFAULT", "PaywallMiddleware", "PaywallOptions"]

RESPONSE_BODY_BYTES_MAX_DEFAULT: Final = 32 * 1024 * 1024

log = logging.getLogger("farthing.paywall")


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
    # Discovery (farthing.paywall.discovery): every 402 declares the bazaar
    # extension and the service metadata; None declares nothing.
    discovery: SiteDiscovery | None = None
    # x402 upto (farthing.paywall.edge.upto): the address payers let settle
    # (extra.facilitatorAddress); None takes the local facilitator's own key.
    upto_facilitator: str | None = None

    def __post_init__(self) -> None:
        if not 1.0 <= self.claim_lease_s <= 24 * 3600:
            raise PaywallConfigError("claim_lease_s must be between 1 s and 24 h")


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
        body_bytes_max = options.response_body_bytes_max
        upto_facilitator = options.upto_facilitator or getattr(
            getattr(options.facilitator, "upto", None), "address", None
        )
        if any("upto" in r.schemes for r in self.routes) and (
            upto_facilitator is None or not isinstance(options.facilitator, UptoSettling)
        ):
            raise PaywallConfigError("an upto route needs a facilitator that settles upto")
        self.challenger = Challenger(
            app,
            channels=self.channels,
            public_url=options.public_url,
            receipts=options.receipts,
            sign_in=self.used_sign_ins is not None,
            preview_selectors=options.preview_selectors,
            body_bytes_max=body_bytes_max,
            discovery=options.discovery,
            upto_facilitator=upto_facilitator,
        )
        self.owned = (
            OwnedArticles(
                app,
                receipts=options.receipts,
                used_sign_ins=self.used_sign_ins,
                store=options.store,
                public_url=options.public_url,
            )
            if options.receipts is not None
            else None
        )
        self.exact = ExactPaidPath(
            app,
            challenger=self.challenger,
            facilitator=options.facilitator,
            store=options.store,
            books=options.books,
            claim_lease_s=options.claim_lease_s,
            body_bytes_max=body_bytes_max,
        )
        self.upto = (
            UptoPaidPath(
                app,
                challenger=self.challenger,
                facilitator=options.facilitator,
                store=options.store,
                books=options.books,
                claim_lease_s=options.claim_lease_s,
                body_bytes_max=body_bytes_max,
            )
            if isinstance(options.facilitator, UptoSettling)
            else None
        )

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
            await serve_websocket(self.app, self.routes, scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        canonical = canonical_request(scope)
        if isinstance(canonical, PathRefusal):
            await send_json(send, 400, {"error": canonical.reason, "message": canonical.message})
            return
        # From here on there is one path and one method: what is matched is
        # exactly what the app (or the proxy's upstream) receives.
        scope = canonical
        path, method = scope["path"], scope["method"]
        route = self.routes.match(method, path)
        if path in ASSET_PATHS and method in ("GET", "HEAD"):
            await send_asset(send, path, head=method == "HEAD")
            return
        if route is not None and route.is_article and self.owned is not None:
            if await self.owned.serve(scope, receive, send, route):
                return
            send = self.owned.with_receipt(scope, send)
        if route is None:
            await serve_unpriced(
                self.app,
                scope,
                receive,
                send,
                routes=self.routes,
                challenger=self.challenger,
                body_bytes_max=self.options.response_body_bytes_max,
            )
            return
        priced = await self.challenger.price(scope, route)
        signature = header(scope, b"payment-signature")
        if signature is None:
            await self.challenger.challenge(scope, receive, send, priced)
            return
        if self.channels is not None and "batch-settlement" in route.schemes:
            channel = decode_channel_payment(
                signature, bytes_max=self.options.payment_header_bytes_max
            )
            if isinstance(channel, MalformedPayment):
                await _send_malformed(send, channel)
                return
            if channel is not None:
                await _outages_as_503(
                    send,
                    serve_channel(
                        self.app,
                        scope,
                        receive,
                        send,
                        challenger=self.challenger,
                        channels=self.channels,
                        priced=priced,
                        payment=self.challenger.declared(priced, channel),
                        body_bytes_max=self.options.response_body_bytes_max,
                    ),
                )
                return
        if self.upto is not None and "upto" in route.schemes:
            upto = decode_upto_payment(signature, bytes_max=self.options.payment_header_bytes_max)
            if isinstance(upto, MalformedPayment):
                await _send_malformed(send, upto)
                return
            if upto is not None:
                payment = self.challenger.declared(priced, upto)
                serving = self.upto.serve(scope, receive, send, priced, payment, route.route.usage)
                await _outages_as_503(send, serving)
                return
        decoded = decode_payment_signature(
            signature, bytes_max=self.options.payment_header_bytes_max
        )
        if not isinstance(decoded, MalformedPayment) and "exact" not in route.schemes:
            await self.challenger.send_402(
                send, priced, "unsupported_scheme",
                f"This route is paid through {' or '.join(route.schemes)} only.",
            )  # fmt: skip
            return
        if isinstance(decoded, MalformedPayment):
            await _send_malformed(send, decoded)
            return
        decoded = self.challenger.declared(priced, decoded)  # what the facilitator catalogs
        await _outages_as_503(send, self.exact.serve(scope, receive, send, priced, decoded))

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


async def _send_malformed(send: Send, malformed: MalformedPayment) -> None:
    """400 for a payment header that cannot be decoded (step 2)."""
    body = {"x402Version": 2, "error": malformed.reason, "message": malformed.message}
    await send_json(send, 400, body)


async def _outages_as_503(send: Send, serving: Awaitable[None]) -> None:
    """Serve a paid request; a facilitator or payment-database outage is a 503 to retry."""
    try:
        await serving
    except FacilitatorUnavailableError as exc:
        await send_unavailable(send, "facilitator_unavailable", str(exc))
    except PaymentStoreError as exc:
        await send_unavailable(send, "payment_database_unavailable", str(exc))
