"""From a verified or settled payment to a catalog entry, without ever stopping the payment.

A facilitator sees ``{"paymentPayload", "paymentRequirements"}``; the payload
carries what the buyer echoed of the seller's 402: ``resource`` (its URL,
description, media type and service metadata) and ``extensions.bazaar``.
:func:`offer_from` turns that into an :class:`~farthing.paywall.discovery.catalog.Offer`
or a :class:`~farthing.paywall.discovery.validation.Refused` reason:

- the declaration must pass :func:`~farthing.paywall.discovery.validation.check_declaration`;
- the resource URL must be an absolute ``http(s)`` URL without userinfo or
  control characters (at most 2048 characters); its query and fragment are
  cut, and a valid ``routeTemplate`` replaces its path;
- ``serviceName``, ``tags`` and ``iconUrl`` are soft-dropped field by field
  (``farthing.paywall.discovery.metadata``); description and media type are
  cut to their column's size;
- the price is the paid ``accepts`` entry's, a decimal string of at most 78
  digits.

:func:`catalog_payment` is what the facilitator's API calls after a payment
was found valid or settled: in a worker thread, and whatever goes wrong (a
poisoned declaration, a full or unreachable database) is logged as one line
and swallowed, so the payment's answer is the one it would have been. A
catalog that does not list local resources (``Catalog.local_resources``
false) also asks the resolver where the resource's host name points
(``farthing.paywall.discovery.resolver``, bounded in time) and drops an entry
whose name resolves to a loopback, private or otherwise non-global address,
or does not resolve.

:func:`first_refusal` is the cheap part of those checks (no schema
validation, no resolver), run before the facilitator answers: its reason is
the ``rejected`` status of the ``EXTENSION-RESPONSES`` side channel
(:func:`extension_responses`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
import idna

from farthing.paywall.discovery.catalog import Catalog, Offer
from farthing.paywall.discovery.metadata import clean_service_metadata, local_host
from farthing.paywall.discovery.resolver import resolved_refusal
from farthing.paywall.discovery.validation import Checked, Refused, check_declaration

__all__ = [
    "EXTENSION_RESPONSES_HEADER",
    "URL_CHARS_MAX",
    "catalog_payment",
    "declares",
    "extension_responses",
    "first_refusal",
    "offer_from",
]

URL_CHARS_MAX: Final = 2048
# x402 v2 §7.2.1: a facilitator's extension outcomes on its verify and settle
# answers, for the resource server only (never forwarded to the buyer).
EXTENSION_RESPONSES_HEADER: Final = "EXTENSION-RESPONSES"
_DESCRIPTION_CHARS_MAX: Final = 512
_MIME_CHARS_MAX: Final = 128
_FIELD_CHARS_MAX: Final = 64
# C0 and C1 controls, and the invisible ones that make text read other than it
# is: bidi marks, embeddings, overrides and isolates, zero-width characters.
_CONTROL: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)
_DIGITS: Final = re.compile(r"[0-9]{1,78}")

logger = logging.getLogger(__name__)


def _url(raw: object, checked: Checked | None, local_resources: bool) -> str | Refused:
    """The URL to list (``checked``'s route template as its path), or why not."""
    if not isinstance(raw, str) or not 0 < len(raw) <= URL_CHARS_MAX or _CONTROL.search(raw):
        return Refused("invalid_resource_url", "resource.url must be a short absolute URL")
    try:
        parts = urlsplit(raw)
        host = parts.hostname
    except ValueError:
        return Refused("invalid_resource_url", "resource.url does not parse")
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return Refused("invalid_resource_url", "resource.url must be http(s) without userinfo")
    if not local_resources and local_host(host):
        return Refused("private_resource_url", "resource.url is on a loopback or private host")
    netloc = parts.netloc.lower()
    if not host.isascii():
        # Shown as its IDNA (punycode) form: a look-alike host ("раypal" in
        # Cyrillic) reads as what it is, a full-width one as its ASCII self.
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
            port = parts.port
        except (UnicodeError, idna.IDNAError, ValueError):
            return Refused("invalid_resource_url", "resource.url has a host that is not a name")
        netloc = ascii_host if port is None else f"{ascii_host}:{port}"
    path = (checked.route_template if checked is not None else None) or parts.path or "/"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _text(value: object, chars_max: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _CONTROL.sub(" ", value[:chars_max])


def _short(value: object) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= _FIELD_CHARS_MAX:
        return None
    return None if _CONTROL.search(value) else value


def offer_from(body: Mapping[str, Any], *, local_resources: bool = True) -> Offer | Refused | None:
    """The catalog entry a verify or settle body declares; None when it declares nothing.

    Without ``local_resources`` a resource at a loopback or private host is refused.
    """
    payload = body.get("paymentPayload")
    requirements = body.get("paymentRequirements")
    if not isinstance(payload, Mapping) or not isinstance(requirements, Mapping):
        return None
    extensions = payload.get("extensions")
    if not isinstance(extensions, Mapping) or "bazaar" not in extensions:
        return None
    checked = check_declaration(extensions["bazaar"])
    if isinstance(checked, Refused):
        return checked
    resource = payload.get("resource")
    if not isinstance(resource, Mapping):
        return Refused("invalid_resource", "the payment names no resource")
    url = _url(resource.get("url"), checked, local_resources)
    if isinstance(url, Refused):
        return url
    amount = requirements.get("amount")
    scheme, network = _short(requirements.get("scheme")), _short(requirements.get("network"))
    asset, pay_to = _short(requirements.get("asset")), _short(requirements.get("payTo"))
    if not isinstance(amount, str) or not _DIGITS.fullmatch(amount):
        return Refused("invalid_requirements", "amount must be a decimal string")
    if scheme is None or network is None or asset is None or pay_to is None:
        return Refused("invalid_requirements", "scheme, network, asset and payTo are needed")
    accepts = {
        key: requirements[key]
        for key in ("scheme", "network", "asset", "amount", "payTo", "maxTimeoutSeconds", "extra")
        if key in requirements
    }
    service = clean_service_metadata(resource)
    return Offer(
        kind=checked.kind,
        url=url,
        method=checked.method,
        tool_name=checked.tool_name,
        description=_text(resource.get("description"), _DESCRIPTION_CHARS_MAX),
        mime_type=_short(resource.get("mimeType")),
        service_name=service.get("serviceName"),
        tags=tuple(service.get("tags", ())),
        icon_url=service.get("iconUrl"),
        scheme=scheme,
        network=network,
        asset=asset,
        pay_to=pay_to,
        amount=int(amount),
        accepts=accepts,
        declaration=checked.to_wire(),
    )


def declares(body: Mapping[str, Any]) -> bool:
    """Whether a verify or settle body carries a ``bazaar`` declaration at all (cheap)."""
    payload = body.get("paymentPayload")
    extensions = payload.get("extensions") if isinstance(payload, Mapping) else None
    return isinstance(extensions, Mapping) and "bazaar" in extensions


def first_refusal(body: Mapping[str, Any], *, local_resources: bool = True) -> Refused | None:
    """Why a declaring body will not be cataloged, from what is cheap to see; None: maybe it will.

    The declaration's shape and the resource URL are checked; the schema
    validation and the resolver come later, in :func:`catalog_payment`.
    """
    payload = body.get("paymentPayload")
    extensions = payload.get("extensions") if isinstance(payload, Mapping) else None
    declared = extensions.get("bazaar") if isinstance(extensions, Mapping) else None
    if not isinstance(declared, Mapping):
        return Refused("invalid_declaration", "extensions.bazaar must be an object")
    if not isinstance(declared.get("info"), Mapping) or not isinstance(
        declared.get("schema"), Mapping
    ):
        return Refused("invalid_declaration", "the declaration needs info and schema objects")
    resource = payload.get("resource") if isinstance(payload, Mapping) else None
    if not isinstance(resource, Mapping):
        return Refused("invalid_resource", "the payment names no resource")
    url = _url(resource.get("url"), None, local_resources)
    return url if isinstance(url, Refused) else None


def extension_responses(status: str, reason: str | None = None) -> dict[str, Any]:
    """The ``EXTENSION-RESPONSES`` object for bazaar: ``processing`` or ``rejected`` and why.

    ``processing``: the declaration passed the cheap checks and is cataloged
    after the answer (the schema validation and resolver may still drop it);
    ``rejected``: it will not be, with the reason (one printable line).
    """
    bazaar: dict[str, Any] = {"status": status}
    if reason is not None:
        bazaar["rejectedReason"] = _CONTROL.sub(" ", reason)[:200]
    return {"bazaar": bazaar}


def _offer_now(catalog: Catalog, body: Mapping[str, Any]) -> Offer | Refused | None:
    return offer_from(body, local_resources=catalog.local_resources)


async def _catalog(catalog: Catalog, body: Mapping[str, Any]) -> str:
    offer = await anyio.to_thread.run_sync(_offer_now, catalog, body)
    if offer is None:
        return "none"
    if isinstance(offer, Refused):
        return f"dropped ({offer.reason})"
    if not catalog.local_resources:
        host = urlsplit(offer.url).hostname or ""
        refused = await resolved_refusal(
            host, catalog.resolver, timeout_s=catalog.resolve_timeout_s
        )
        if refused is not None:
            return f"dropped ({refused})"
    return await anyio.to_thread.run_sync(catalog.record, offer)


async def catalog_payment(catalog: Catalog, body: Mapping[str, Any]) -> str:
    """Catalog what a valid or settled payment declares; never raises (the payment goes on)."""
    try:
        outcome = await _catalog(catalog, body)
    except Exception as exc:  # noqa: BLE001 - the catalog must never cost a payment its answer
        logger.warning("discovery catalog: not recorded (%s)", type(exc).__name__)
        return "error"
    if outcome.startswith("dropped"):
        logger.info("discovery catalog: declaration %s", outcome)
    return outcome
