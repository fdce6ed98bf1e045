"""x402's MCP tool-result binding, the buyer's side: reading a tool's terms and answer, writing the payment.

A paid tool answers an unpaid call with a tool result that has
``isError: true`` and a ``PaymentRequired`` object in ``structuredContent``
(and the same object as JSON in the first text content, for clients that
cannot read structured content). The paid call carries the ``PaymentPayload``
in ``params._meta["x402/payment"]``; the seller's ``SettlementResponse``
comes back in ``result._meta["x402/payment-response"]``. A settle that failed
is a payment-required result again; the x402 SDK also puts its failed
``SettlementResponse`` inside that ``structuredContent``.

Everything here reads untrusted input and never raises: a tool result that is
not a payment request is ``None``, one that cannot be read is a
:class:`~farthing.agents.challenge.MalformedChallenge`. Sizes are bounded
before any parsing work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from mcp.types import CallToolResult, TextContent

from farthing.agents.challenge import (
    CHALLENGE_BYTES_MAX,
    Challenge,
    MalformedChallenge,
    SellerAnswer,
    read_payment_required,
)
from farthing.agents.payer import AnyPrepared
from farthing.invariant import invariant
from farthing.paywall.edge.paths import PathRefusal, canonical_path, encode_path
from farthing.paywall.wire import PAYMENT_SIGNATURE_HEADER, unb64_json
from farthing.web import JsonBodyError, loads_bounded

__all__ = [
    "PAYMENT_META_KEY",
    "PAYMENT_RESPONSE_META_KEY",
    "bought_resource",
    "payment_meta",
    "result_text",
    "settlement_pending",
    "tool_answer",
    "tool_challenge",
    "tool_resource",
]

PAYMENT_META_KEY: Final = "x402/payment"
PAYMENT_RESPONSE_META_KEY: Final = "x402/payment-response"
# A settlement response carries a channel's state too; it stays well under this.
_RESPONSE_BYTES_MAX: Final = 64 * 1024
_JSON_DEPTH_MAX: Final = 16
_TOOL_NAME_MAX: Final = 128
_PENDING_ERRORS: Final = frozenset({"settlement_pending", "payment_in_progress"})
# A Farthing site's page tool (farthing.paywall.mcp.fetch): its ``path`` names the page bought.
_FETCH_TOOL: Final = "fetch"
_PATH_CHARS_MAX: Final = 2048
_MCP_PATH: Final = "/mcp"


def tool_resource(server_url: str, tool: str) -> str:
    """What a tool call buys, as the books record it: the server's URL and the tool's name.

    The host is the MCP server's, so the spend policy's host lists apply to it
    as to a page; the same tool on the same server is the same purchase.
    """
    return f"{server_url}#tool={quote(tool[:_TOOL_NAME_MAX], safe='')}"


def bought_resource(server_url: str, tool: str, arguments: Mapping[str, Any]) -> str:
    """What a call buys, for the books: a site's page for ``fetch``, else :func:`tool_resource`.

    A Farthing site sells each page through one tool, ``fetch`` (argument
    ``path``); recorded as ``…/mcp#tool=fetch``, every article would read the
    same in the books. So a ``fetch`` with a readable ``path`` is recorded as
    the page's canonical URL: the path made canonical as the seller's edge
    makes it (``farthing.paywall.edge.paths``; its query and any fragment
    dropped) joined to the site, the MCP server's URL without its ``/mcp``.
    The host is the MCP server's own, whatever the path says, so the spend
    policy's host lists judge it as before; a path the seller would refuse is
    recorded as the tool.
    """
    page = _page_url(server_url, arguments.get("path")) if tool == _FETCH_TOOL else None
    return page if page is not None else tool_resource(server_url, tool)


def _page_url(server_url: str, path: object) -> str | None:
    if not isinstance(path, str) or not 0 < len(path) <= _PATH_CHARS_MAX:
        return None
    if not path.startswith("/") or any(not "\x21" <= c <= "\x7e" for c in path):
        return None
    target = path.split("?", 1)[0].split("#", 1)[0]
    canonical = canonical_path({"raw_path": target.encode("ascii"), "path": target})
    if isinstance(canonical, PathRefusal):
        return None
    try:
        parts = urlsplit(server_url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    base = parts.path.rstrip("/")
    base = base.removesuffix(_MCP_PATH)
    site_path = base + encode_path(canonical).decode("ascii")
    return urlunsplit((parts.scheme, parts.netloc, site_path, "", ""))


def _bounded_object(value: Any, bytes_max: int) -> Mapping[str, Any] | None:
    """``value`` if it is a JSON object no larger than ``bytes_max`` when written, else None."""
    if not isinstance(value, Mapping):
        return None
    try:
        size = len(json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        return None
    return value if size <= bytes_max else None


def _first_text(result: CallToolResult) -> str | None:
    for block in result.content[:1]:
        if isinstance(block, TextContent):
            return block.text
    return None


def _payment_required(result: CallToolResult) -> Mapping[str, Any] | str | None:
    """The result's ``PaymentRequired`` object; a reason string when it is one but unreadable."""
    if not result.isError:
        return None
    structured = result.structuredContent
    if isinstance(structured, Mapping) and "x402Version" in structured and "accepts" in structured:
        bounded = _bounded_object(structured, CHALLENGE_BYTES_MAX)
        return bounded if bounded is not None else "the PaymentRequired is too large"
    text = _first_text(result)
    if text is None or '"x402Version"' not in text[:CHALLENGE_BYTES_MAX]:
        return None  # an ordinary tool error
    if len(text) > CHALLENGE_BYTES_MAX:
        return "the PaymentRequired is too large"
    try:
        data = loads_bounded(
            text.encode("utf-8"), depth_max=_JSON_DEPTH_MAX, bytes_max=CHALLENGE_BYTES_MAX
        )
    except (JsonBodyError, ValueError, UnicodeError):
        return "the PaymentRequired text is not a JSON object"
    if isinstance(data, Mapping) and "x402Version" in data and "accepts" in data:
        return data
    return None


def tool_challenge(result: CallToolResult) -> Challenge | MalformedChallenge | None:
    """The terms of a payment-required tool result; ``None`` when the result does not ask for payment."""
    found = _payment_required(result)
    if found is None:
        return None
    if isinstance(found, str):
        return MalformedChallenge("malformed_payment_required", found)
    return read_payment_required(found)


def tool_answer(result: CallToolResult) -> SellerAnswer:
    """A paid call's result as the seller's answer: delivered, refused, or neither."""
    meta = result.meta if isinstance(result.meta, Mapping) else {}
    settlement = _bounded_object(meta.get(PAYMENT_RESPONSE_META_KEY), _RESPONSE_BYTES_MAX)
    challenge = tool_challenge(result)
    if (
        settlement is None
        and challenge is not None
        and isinstance(result.structuredContent, Mapping)
    ):
        # The SDK's wrapper reports a failed settle inside the payment-required object.
        settlement = _bounded_object(
            result.structuredContent.get(PAYMENT_RESPONSE_META_KEY), _RESPONSE_BYTES_MAX
        )
    return SellerAnswer(
        delivered=not result.isError,
        refused=challenge is not None,
        settlement=settlement,
        challenge=challenge,
        status="a tool error" if result.isError else "a tool result",
    )


def settlement_pending(result: CallToolResult) -> bool:
    """The seller is still settling *this* payment (or another call holds it): ask again with it.

    Farthing's sellers answer an error result ``{"error": "settlement_pending"}``
    (or ``payment_in_progress``), the MCP form of the HTTP edge's 503; a new
    signature could be charged twice, so the same payment is sent again.
    """
    structured = result.structuredContent
    if not result.isError or not isinstance(structured, Mapping):
        return False
    return structured.get("error") in _PENDING_ERRORS and "accepts" not in structured


def payment_meta(prepared: AnyPrepared) -> dict[str, Any]:
    """The ``_meta`` of the paid call: the ``PaymentPayload`` the payer signed, as an object.

    The payer writes it as a ``PAYMENT-SIGNATURE`` header value (our own
    base64 JSON); MCP carries the same object unencoded.
    """
    name, value = prepared.header
    invariant(name == PAYMENT_SIGNATURE_HEADER, f"an MCP payment is x402 v2, not {name}")
    payload = unb64_json(value)
    invariant(isinstance(payload, dict), "the payer's payment header is a JSON object")
    return {PAYMENT_META_KEY: payload}


def result_text(result: CallToolResult, *, chars_max: int) -> str:
    """A tool result's content as text for a person or a model (untrusted: fence it before use)."""
    parts: list[str] = []
    size = 0
    for block in result.content:
        if isinstance(block, TextContent):
            part = block.text
        else:
            part = f"[{block.type} content]"
        parts.append(part[: max(0, chars_max - size)])
        size += len(part)
        if size >= chars_max:
            break
    return "\n".join(parts)[:chars_max]
