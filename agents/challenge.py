"""Reading a seller's 402: x402 v2 ``PAYMENT-REQUIRED`` headers and v1 JSON bodies.

A 402 is untrusted input. :func:`read_challenge` never raises: it returns a
:class:`Challenge` (the terms that could be read, and why the others could
not) or a :class:`MalformedChallenge` with a snake_case reason. Sizes are
bounded before any parsing work. Each ``accepts`` entry is parsed with the
paywall's own :meth:`PaymentRequirements.from_wire`, so both sides of Farthing
read the wire the same way; v1 entries (``maxAmountRequired``, a network
*name*) are first put in v2 form.

:func:`read_settlement` reads ``PAYMENT-RESPONSE`` (or v1's
``X-PAYMENT-RESPONSE``) with the paywall's :meth:`SettleResult.from_wire`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import httpx

from farthing.paywall.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PaymentRequirements,
    SettleResult,
)
from farthing.wallet.errors import AddressError, AmountError, AuthorizationError
from farthing.wallet.networks import NETWORKS, caip2

__all__ = [
    "CHALLENGE_BYTES_MAX",
    "V1_NETWORKS",
    "X_PAYMENT_RESPONSE_HEADER",
    "Challenge",
    "FiatTerms",
    "MalformedChallenge",
    "Offer",
    "SellerAnswer",
    "answer_of",
    "read_challenge",
    "read_payment_required",
    "read_settlement",
    "settlement_from",
]

X_PAYMENT_RESPONSE_HEADER: Final = "X-PAYMENT-RESPONSE"
# A 402 header with a handful of offers is about 1 KB; 16 KiB is plenty, and a
# hostile seller cannot make the client parse megabytes.
CHALLENGE_BYTES_MAX: Final = 16 * 1024
# A settlement response carries a channel's state too; this bounds it before parsing.
_SETTLEMENT_BYTES_MAX: Final = 64 * 1024
_BODY_BYTES_MAX: Final = 256 * 1024
_OFFERS_MAX: Final = 16
_PREVIEW_CHARS_MAX: Final = 8_000
_TEXT_MAX: Final = 2048
_DECIMAL_RE: Final = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?$")
_CURRENCY_RE: Final = re.compile(r"^[A-Z]{3,8}$")

# v1 names its networks; these are the EVM ones x402's v1 clients know, plus
# Farthing's own registry (``local`` is anvil).
V1_NETWORKS: Final[dict[str, int]] = {
    "base": 8453,
    "base-sepolia": 84532,
    "ethereum": 1,
    "polygon": 137,
    "polygon-amoy": 80002,
    "avalanche": 43114,
    "avalanche-fuji": 43113,
    **{name: network.chain_id for name, network in NETWORKS.items()},
}


@dataclass(frozen=True, slots=True)
class Offer:
    """One way the seller accepts payment, with the x402 version and network spelling it came in."""

    requirements: PaymentRequirements
    x402_version: int = 2
    wire_network: str = ""  # v1's network name, echoed back in X-PAYMENT
    # The entry exactly as the seller sent it: v2 payments echo it as
    # ``accepted``, and sellers compare every field they declared, extras too.
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def amount(self) -> int:
        return self.requirements.amount


@dataclass(frozen=True, slots=True)
class FiatTerms:
    """The seller's fiat price, when it states one: recorded with the payment, never trusted for the amount."""

    currency: str
    amount: str  # decimal strings, as the seller wrote them
    rate: str


@dataclass(frozen=True, slots=True)
class Challenge:
    """A readable 402: the offers, the ones skipped and why, and the free preview if any."""

    x402_version: int
    offers: tuple[Offer, ...]
    skipped: tuple[str, ...] = ()  # a snake_case reason per offer that could not be used
    resource_url: str | None = None
    resource: Mapping[str, Any] | None = None  # v2's resource object, echoed in the payment
    description: str = ""
    error: str | None = None  # the seller's reason, e.g. after a refused payment
    message: str | None = None
    preview: str | None = None
    fiat: FiatTerms | None = None
    # v2's extensions the seller declares, by key (e.g. an upto facilitator's gas sponsoring).
    extensions: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MalformedChallenge:
    """A 402 whose terms could not be read at all."""

    reason: str
    message: str


def read_challenge(response: httpx.Response) -> Challenge | MalformedChallenge:
    """The terms of a 402 response (its body must have been read)."""
    body = _json_body(response)
    header = response.headers.get(PAYMENT_REQUIRED_HEADER)
    if header is not None:
        return _read_v2(header, body)
    if isinstance(body, Mapping) and body.get("x402Version") == 1:
        return _read_v1(body)
    if isinstance(body, Mapping) and body.get("x402Version") not in (None, 2):
        return MalformedChallenge(
            "unsupported_x402_version", f"x402Version {body.get('x402Version')!r} is not 1 or 2"
        )
    return MalformedChallenge(
        "malformed_payment_required", "the 402 has no PAYMENT-REQUIRED header and no x402 v1 body"
    )


def read_settlement(response: httpx.Response) -> SettleResult | None:
    """The seller's ``PAYMENT-RESPONSE`` (or v1 ``X-PAYMENT-RESPONSE``), or None if absent or unreadable."""
    header = response.headers.get(PAYMENT_RESPONSE_HEADER) or response.headers.get(
        X_PAYMENT_RESPONSE_HEADER
    )
    if header is None:
        return None
    return settlement_from(_unb64_json(header))


def settlement_from(data: Any) -> SettleResult | None:
    """A settlement response object as any transport carried it, or None if it is not one."""
    if data is None:
        return None
    try:
        return SettleResult.from_wire(data)
    except (AuthorizationError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class SellerAnswer:
    """The seller's answer to a signed payment, whatever transport carried it (HTTP, MCP).

    ``delivered``: the content came (an HTTP 2xx, a tool result that is not
    an error). ``refused``: the seller asked for payment again (an HTTP 402, a
    tool's payment-required error), with the terms it sent (``challenge``).
    ``settlement`` is the settlement response object as sent, unparsed (a
    scheme reads its own fields from it); ``status`` says in a few words what
    came back, for messages ("500", "a tool error").
    """

    delivered: bool
    refused: bool
    settlement: Mapping[str, Any] | None
    challenge: Challenge | MalformedChallenge | None
    status: str


def answer_of(response: httpx.Response) -> SellerAnswer:
    """An HTTP response (its body read) as a :class:`SellerAnswer`."""
    header = response.headers.get(PAYMENT_RESPONSE_HEADER) or response.headers.get(
        X_PAYMENT_RESPONSE_HEADER
    )
    data = _unb64_json(header, _SETTLEMENT_BYTES_MAX) if header is not None else None
    refused = response.status_code == 402
    return SellerAnswer(
        delivered=response.is_success,
        refused=refused,
        settlement=data if isinstance(data, Mapping) else None,
        challenge=read_challenge(response) if refused else None,
        status=str(response.status_code),
    )


# ------------------------------------------------------------------ v2


def _read_v2(header: str, body: Any) -> Challenge | MalformedChallenge:
    if len(header) > CHALLENGE_BYTES_MAX:
        return MalformedChallenge(
            "malformed_payment_required", f"PAYMENT-REQUIRED is over {CHALLENGE_BYTES_MAX} bytes"
        )
    data = _unb64_json(header)
    if not isinstance(data, Mapping):
        return MalformedChallenge(
            "malformed_payment_required", "PAYMENT-REQUIRED is not base64 of a JSON object"
        )
    return read_payment_required(data, body, source="PAYMENT-REQUIRED")


def read_payment_required(
    data: Mapping[str, Any], body: Any = None, *, source: str = "the PaymentRequired"
) -> Challenge | MalformedChallenge:
    """The terms of an x402 v2 ``PaymentRequired`` object, whatever transport carried it.

    The caller bounds its size first. ``body`` is where Farthing's own sellers
    put the free preview and the fiat price (the 402's JSON body over HTTP).
    """
    version = data.get("x402Version")
    if version != 2 or isinstance(version, bool):
        return MalformedChallenge(
            "unsupported_x402_version", f"{source} has x402Version {version!r}, not 2"
        )
    accepts = data.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        return MalformedChallenge(
            "malformed_payment_required", f"{source} has no list of accepted payments"
        )
    offers, skipped = _offers(accepts[:_OFFERS_MAX], version=2)
    resource = data.get("resource")
    resource = resource if isinstance(resource, Mapping) else {}
    extra = body if isinstance(body, Mapping) else {}
    return Challenge(
        x402_version=2,
        offers=offers,
        skipped=skipped,
        resource_url=_text(resource.get("url")),
        resource=dict(resource) if resource else None,
        description=_text(resource.get("description")) or "",
        error=_text(data.get("error")),
        message=_text(extra.get("message")),
        preview=_preview(extra.get("preview")),
        fiat=_fiat(extra.get("price")),
        extensions=_extensions(data.get("extensions")),
    )


# ------------------------------------------------------------------ v1


def _read_v1(body: Mapping[str, Any]) -> Challenge | MalformedChallenge:
    accepts = body.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        return MalformedChallenge(
            "malformed_payment_required", "the x402 v1 body has no list of accepted payments"
        )
    converted: list[Any] = []
    names: list[str] = []
    for entry in accepts[:_OFFERS_MAX]:
        if not isinstance(entry, Mapping):
            converted.append(entry)
            names.append("")
            continue
        name = entry.get("network")
        chain_id = V1_NETWORKS.get(name) if isinstance(name, str) else None
        if chain_id is None and isinstance(name, str) and name.startswith("eip155:"):
            chain_id = int(name[7:]) if name[7:].isdigit() and len(name) < 30 else None
        converted.append(
            {
                "scheme": entry.get("scheme"),
                "network": caip2(chain_id) if chain_id is not None else name,
                "asset": entry.get("asset"),
                "amount": entry.get("maxAmountRequired"),
                "payTo": entry.get("payTo"),
                "maxTimeoutSeconds": entry.get("maxTimeoutSeconds"),
                "extra": entry.get("extra"),
            }
        )
        names.append(name if isinstance(name, str) else "")
    offers, skipped = _offers(converted, version=1, names=names)
    first = accepts[0] if isinstance(accepts[0], Mapping) else {}
    return Challenge(
        x402_version=1,
        offers=offers,
        skipped=skipped,
        resource_url=_text(first.get("resource")),
        description=_text(first.get("description")) or "",
        error=_text(body.get("error")),
    )


# ------------------------------------------------------------------ shared


def _offers(
    entries: list[Any], *, version: int, names: list[str] | None = None
) -> tuple[tuple[Offer, ...], tuple[str, ...]]:
    offers: list[Offer] = []
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            skipped.append("malformed_payment_required")
            continue
        network = entry.get("network")
        if not isinstance(network, str) or not network.startswith("eip155:"):
            # Solana and friends: well-formed, just not something this wallet can sign.
            skipped.append("unsupported_network")
            continue
        try:
            requirements = PaymentRequirements.from_wire(entry)
        except (AuthorizationError, AddressError, AmountError):
            skipped.append("malformed_payment_required")
            continue
        wire_network = names[index] if names is not None else requirements.network
        offers.append(Offer(requirements, version, wire_network, dict(entry)))
    return tuple(offers), tuple(skipped)


def _unb64_json(text: str, bytes_max: int = CHALLENGE_BYTES_MAX) -> Any:
    if len(text) > bytes_max:
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None


def _json_body(response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        return None
    content = response.content
    if len(content) > _BODY_BYTES_MAX:
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _text(value: object) -> str | None:
    return value[:_TEXT_MAX] if isinstance(value, str) else None


def _extensions(value: object) -> Mapping[str, Any] | None:
    """The declared extensions' keys with their objects; only keys are ever acted on."""
    if not isinstance(value, Mapping):
        return None
    found = {
        k: v for k, v in list(value.items())[:_OFFERS_MAX] if isinstance(k, str) and len(k) < 64
    }
    return found or None


def _preview(value: object) -> str | None:
    return value[:_PREVIEW_CHARS_MAX] if isinstance(value, str) and value else None


def _fiat(price: object) -> FiatTerms | None:
    if not isinstance(price, Mapping):
        return None
    currency, amount, rate = (price.get(k) for k in ("fiatCurrency", "fiatAmount", "fiatRate"))
    if not (isinstance(currency, str) and _CURRENCY_RE.match(currency)):
        return None
    if not all(isinstance(v, str) and _DECIMAL_RE.match(v) for v in (amount, rate)):
        return None
    try:
        if Decimal(str(rate)) <= 0:
            return None
    except InvalidOperation:
        return None
    return FiatTerms(currency, str(amount), str(rate))
