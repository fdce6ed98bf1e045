"""The facilitator's HTTP API, as ``farthing facilitator serve`` runs it.

``GET /supported``, ``POST /verify`` and ``POST /settle`` in x402 v2
camelCase JSON. Every payment outcome, including a payload that cannot be
parsed, is HTTP 200 with ``isValid: false`` or ``success: false`` and a reason:
official clients treat any other status as a crash. Other statuses mean
something that is not a payment outcome: 401 for a missing or wrong API key
(``Authorization: Bearer <key>``), 415 for a POST that is not
``application/json`` (what a web page's cross-site "simple" request would
send), 400 for a body that is not a JSON object or nests deeper than
``JSON_DEPTH_MAX``, 413 for an oversized body, and 503 when the chain does not
answer.

Who may call (DESIGN.md §13): with a ``token`` (the API key), only its
holders. A facilitator holding a channel receiver-authorizer key signs claims
and refunds for its callers, so it is served only behind an API key:
``facilitator_app`` refuses to build without one.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from farthing.paywall.discovery.catalog import Catalog
from farthing.paywall.discovery.ingest import (
    EXTENSION_RESPONSES_HEADER,
    catalog_payment,
    declares,
    extension_responses,
    first_refusal,
)
from farthing.paywall.discovery.listing import catalog_routes
from farthing.paywall.errors import FacilitatorUnavailableError, PaywallConfigError
from farthing.paywall.schemes.auth_capture.facilitator import AuthCaptureSettling
from farthing.paywall.schemes.auth_capture.wire import SCHEME as AUTH_CAPTURE_SCHEME
from farthing.paywall.schemes.auth_capture.wire import parse_payment as parse_auth_capture_payment
from farthing.paywall.schemes.auth_capture.wire import (
    parse_requirements as parse_auth_capture_requirements,
)
from farthing.paywall.schemes.batch_settlement.facilitator import ChannelSettling
from farthing.paywall.schemes.batch_settlement.types import (
    parse_channel_payment,
    parse_channel_requirements,
)
from farthing.paywall.schemes.batch_settlement.wire import ERR_INVALID_SCHEME, SCHEME
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.upto.facilitator import UptoSettling
from farthing.paywall.schemes.upto.types import EIP2612_KEY, ERC20_APPROVAL_KEY
from farthing.paywall.schemes.upto.types import ERR_SCHEME as UPTO_ERR_SCHEME
from farthing.paywall.schemes.upto.types import SCHEME as UPTO_SCHEME
from farthing.paywall.schemes.upto.wire import parse_payment as parse_upto_payment
from farthing.paywall.schemes.upto.wire import parse_requirements as parse_upto_requirements
from farthing.paywall.seam import Facilitator
from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequirements,
    SettleResult,
    VerifyResult,
    b64_json,
)
from farthing.wallet.errors import AddressError, AmountError, AuthorizationError
from farthing.web import JsonBodyError, loads_bounded

__all__ = ["JSON_DEPTH_MAX", "REQUEST_BYTES_MAX", "facilitator_app"]

REQUEST_BYTES_MAX: Final = 64 * 1024
# The deepest x402 body (a refund's claims: payload, claims, row, voucher,
# channel) nests 6 levels; anything past this is not a payment.
JSON_DEPTH_MAX: Final = 16


def facilitator_app(
    facilitator: Facilitator, *, token: str | None = None, catalog: Catalog | None = None
) -> Starlette:
    """An ASGI app serving ``facilitator`` over HTTP; ``token`` requires ``Bearer`` auth.

    With a ``catalog`` (``farthing.paywall.discovery``), what a valid or
    settled payment declares in ``extensions.bazaar`` is cataloged after the
    answer is sent (a poisoned declaration is dropped, the payment unaffected),
    ``/supported`` lists the ``bazaar`` extension, and anyone may read
    ``GET /discovery/resources`` and ``GET /discovery/search``. A verify or
    settle answer to a declaring payment carries the ``EXTENSION-RESPONSES``
    header (x402 v2 §7.2.1, for the resource server): ``bazaar`` ``processing``
    (cataloged after the answer) or ``rejected`` with the reason.

    Raises ``PaywallConfigError`` for a facilitator that signs as a channel
    receiver authorizer with no ``token``: it would sign claims and refunds
    for anyone who can reach it.
    """
    channels = getattr(facilitator, "channels", None)
    if not token and getattr(channels, "authorizer", None) is not None:
        raise PaywallConfigError(
            "a facilitator that signs channel claims and refunds as receiver authorizer "
            "must require an API key: only the receiver's servers may ask for them"
        )
    expected = f"Bearer {token}".encode() if token else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def unauthorized() -> JSONResponse:
        return JSONResponse(
            {"error": "unauthorized", "message": "send Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def read(request: Request) -> tuple[Any, JSONResponse | None]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return None, JSONResponse(
                {
                    "error": "unsupported_media_type",
                    "message": "send Content-Type: application/json",
                },
                status_code=415,
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > REQUEST_BYTES_MAX:
            return None, JSONResponse({"error": "request_too_large"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > REQUEST_BYTES_MAX:
                return None, JSONResponse({"error": "request_too_large"}, status_code=413)
        try:
            data = loads_bounded(body, depth_max=JSON_DEPTH_MAX, bytes_max=REQUEST_BYTES_MAX)
        except JsonBodyError as exc:
            return None, JSONResponse({"error": exc.reason, "message": str(exc)}, status_code=400)
        if not isinstance(data, dict):
            return None, JSONResponse(
                {"error": "invalid_json", "message": "the body must be a JSON object"},
                status_code=400,
            )
        return data, None

    def parse(data: dict[str, Any]) -> tuple[PaymentPayload, PaymentRequirements] | str:
        try:
            requirements = PaymentRequirements.from_wire(data.get("paymentRequirements"))
            payload = PaymentPayload.from_wire(data.get("paymentPayload"))
        except (AuthorizationError, AddressError, AmountError) as exc:
            return str(exc)
        return payload, requirements

    def channel_request(data: dict[str, Any], scheme: str = SCHEME) -> bool:
        """A batch-settlement (or ``scheme``) request: requirements or accepted say so."""
        raw = data.get("paymentRequirements")
        payment = data.get("paymentPayload")
        accepted = payment.get("accepted") if isinstance(payment, dict) else None
        return any(isinstance(x, dict) and x.get("scheme") == scheme for x in (raw, accepted))

    def unavailable(exc: FacilitatorUnavailableError) -> JSONResponse:
        return JSONResponse({"error": "unavailable", "message": str(exc)}, status_code=503)

    async def outcome(answer: Awaitable[VerifyResult | SettleResult]) -> JSONResponse:
        """The facilitator's answer as JSON; an outage (the chain silent) is the one 503."""
        try:
            return JSONResponse((await answer).to_wire())
        except FacilitatorUnavailableError as exc:
            return unavailable(exc)

    def refusal(data: dict[str, Any], refused: WireRefusal, settle: bool) -> JSONResponse:
        """A refused payment as x402 answers it: a 200 with the reason, on the request's network."""
        if settle:
            raw = data.get("paymentRequirements")
            network = raw.get("network") if isinstance(raw, dict) else None
            network = network if isinstance(network, str) else ""
            answer = SettleResult(False, network, reason=refused.reason, message=refused.detail)
            return JSONResponse(answer.to_wire())
        return JSONResponse(VerifyResult(False, refused.reason, None, refused.detail).to_wire())

    async def auth_capture_call(data: dict[str, Any], settle: bool) -> JSONResponse:
        """An auth-capture request; every refusal is a 200 with the spec's code."""
        requirements = parse_auth_capture_requirements(data.get("paymentRequirements"))
        payment = parse_auth_capture_payment(data.get("paymentPayload"))
        if (
            isinstance(facilitator, AuthCaptureSettling)
            and not isinstance(requirements, WireRefusal)
            and not isinstance(payment, WireRefusal)
        ):
            if settle:
                return await outcome(facilitator.settle_auth_capture(payment, requirements))
            return await outcome(facilitator.verify_auth_capture(payment, requirements))
        if isinstance(requirements, WireRefusal):
            return refusal(data, requirements, settle)
        if isinstance(payment, WireRefusal):
            return refusal(data, payment, settle)
        no_scheme = "this facilitator has no auth-capture"
        return refusal(data, WireRefusal("invalid_auth_capture_evm_scheme", no_scheme), settle)

    async def upto_call(data: dict[str, Any], settle: bool) -> JSONResponse:
        """An upto request; every refusal is a 200 with the spec's code."""
        if not isinstance(facilitator, UptoSettling):
            return refusal(
                data, WireRefusal(UPTO_ERR_SCHEME, "this facilitator has no upto"), settle
            )
        requirements = parse_upto_requirements(data.get("paymentRequirements"))
        if isinstance(requirements, WireRefusal):
            return refusal(data, requirements, settle)
        payment = parse_upto_payment(data.get("paymentPayload"))
        if isinstance(payment, WireRefusal):
            return refusal(data, payment, settle)
        if settle:
            return await outcome(facilitator.settle_upto(payment, requirements))
        return await outcome(facilitator.verify_upto(payment, requirements))

    async def channel_call(data: dict[str, Any], settle: bool) -> JSONResponse:
        requirements = parse_channel_requirements(data.get("paymentRequirements"))
        payment = parse_channel_payment(data.get("paymentPayload"))
        if not isinstance(facilitator, ChannelSettling):
            no_scheme = "this facilitator has no batch-settlement"
            return refusal(data, WireRefusal(ERR_INVALID_SCHEME, no_scheme), settle)
        if isinstance(requirements, WireRefusal):
            return refusal(data, requirements, settle)
        if isinstance(payment, WireRefusal):
            return refusal(data, payment, settle)
        if settle:
            return await outcome(facilitator.settle_channel(payment, requirements))
        return await outcome(facilitator.verify_channel(payment, requirements))

    async def supported(request: Request) -> JSONResponse:
        if not authorized(request):
            return unauthorized()
        try:
            kinds = await facilitator.supported()
        except FacilitatorUnavailableError as exc:
            return unavailable(exc)
        wire = kinds.to_wire()
        upto = getattr(facilitator, "upto", None)
        if upto is not None and isinstance(facilitator, UptoSettling):
            # The spec's facilitatorAddress: whom payers bind in the witness.
            wire["kinds"].append(
                {"x402Version": 2, "scheme": UPTO_SCHEME, "network": upto.network}
                | {"extra": upto.supported_extra()}
            )
            wire["extensions"] = [*wire.get("extensions", []), EIP2612_KEY, ERC20_APPROVAL_KEY]
        if catalog is not None:
            wire["extensions"] = [*wire.get("extensions", []), "bazaar"]
        return JSONResponse(wire)

    async def call(request: Request, settle: bool) -> JSONResponse:
        """``POST /verify`` (``settle`` false) or ``POST /settle``, routed by scheme."""
        if not authorized(request):
            return unauthorized()
        data, problem = await read(request)
        if problem is not None:
            return problem
        response = await answer(data, settle)
        if catalog is not None and declares(data) and response.background is None:
            if not _accepted(response):
                outcome = extension_responses("rejected", "the payment was not accepted")
            elif refused := first_refusal(data, local_resources=catalog.local_resources):
                outcome = extension_responses("rejected", str(refused))
            else:
                # After the answer is sent: the catalog never delays or changes a payment.
                response.background = BackgroundTask(catalog_payment, catalog, data)
                outcome = extension_responses("processing")
            if response.status_code == 200:
                response.headers[EXTENSION_RESPONSES_HEADER] = b64_json(outcome)
        return response

    async def answer(data: dict[str, Any], settle: bool) -> JSONResponse:
        if channel_request(data):
            return await channel_call(data, settle)
        if channel_request(data, AUTH_CAPTURE_SCHEME):
            return await auth_capture_call(data, settle)
        if channel_request(data, UPTO_SCHEME):
            return await upto_call(data, settle)
        parsed = parse(data)
        if isinstance(parsed, str):
            return refusal(data, WireRefusal("invalid_payload", parsed), settle)
        if settle:
            return await outcome(facilitator.settle(*parsed))
        return await outcome(facilitator.verify(*parsed))

    async def verify(request: Request) -> JSONResponse:
        return await call(request, settle=False)

    async def settle(request: Request) -> JSONResponse:
        return await call(request, settle=True)

    return Starlette(
        routes=[
            Route("/supported", supported, methods=["GET"]),
            Route("/verify", verify, methods=["POST"]),
            Route("/settle", settle, methods=["POST"]),
            *(catalog_routes(catalog) if catalog is not None else []),
        ]
    )


def _accepted(response: JSONResponse) -> bool:
    """A verify found valid or a settle that succeeded: only those are cataloged."""
    if response.status_code != 200:
        return False
    answer = json.loads(bytes(response.body))
    return isinstance(answer, dict) and (
        answer.get("isValid") is True or answer.get("success") is True
    )
