"""What an MCP request's ``_meta`` may carry for the paywall, read without trusting it.

x402's MCP binding (``specs/transports-v2/mcp.md``) sends the payment in
``params._meta["x402/payment"]`` and answers with
``result._meta["x402/payment-response"]``. The payment is re-encoded here as
the ``PAYMENT-SIGNATURE`` value the HTTP edge reads, so one decoder (with its
byte and depth bounds) judges both transports. A reader who bought a page
proves it over MCP as over HTTP: a receipt in ``_meta["farthing/receipt"]``
(the ``name=value`` cookie pair a paid answer returned) or an x402
sign-in-with-x header in ``_meta["sign-in-with-x"]``.

Every value is bounded before it is serialized: nesting, item count and size;
``None`` values are dropped (the x402 SDK's MCP client sends its payload with
``"extensions": null`` and ``resource.serviceName: null``), which means the
same as leaving them out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from farthing.paywall.edge.receipts import RECEIPT_COOKIE_PREFIX
from farthing.paywall.edge.sign_in import SIGN_IN_WITH_X
from farthing.paywall.wire import (
    HEADER_JSON_DEPTH_MAX,
    PAYMENT_HEADER_BYTES_MAX,
    MalformedPayment,
    b64_json,
)

__all__ = [
    "PAYMENT_META",
    "PAYMENT_RESPONSE_META",
    "RECEIPT_META",
    "RECEIPT_PAIR_RE",
    "SIGN_IN_META",
    "Proofs",
    "dumps",
    "meta_of",
    "payment_header",
    "proofs_of",
]

PAYMENT_META: Final = "x402/payment"
PAYMENT_RESPONSE_META: Final = "x402/payment-response"
RECEIPT_META: Final = "farthing/receipt"
SIGN_IN_META: Final = SIGN_IN_WITH_X
_DEPTH_MAX: Final = HEADER_JSON_DEPTH_MAX  # the payment header's own bound (echoed extensions)
_ITEMS_MAX: Final = 256
# A receipt cookie's pair (farthing.paywall.edge.receipts): its name, then its signed token.
RECEIPT_PAIR_RE: Final = re.compile(
    re.escape(RECEIPT_COOKIE_PREFIX) + r"[0-9a-f]{16}=[A-Za-z0-9_\-.]{1,2048}"
)
_HEADER_VALUE_RE: Final = re.compile(r"^[\x21-\x7e]{1,4096}$")


def meta_of(context: Any) -> Mapping[str, Any]:
    """The request's ``_meta`` (a FastMCP ``Context`` or a low-level request context)."""
    request_context = getattr(context, "request_context", context)
    meta = getattr(request_context, "meta", None)
    if meta is None:
        return {}
    extra = getattr(meta, "model_extra", None)
    return extra if isinstance(extra, Mapping) else {}


def payment_header(meta: Mapping[str, Any]) -> str | MalformedPayment | None:
    """``_meta["x402/payment"]`` as a ``PAYMENT-SIGNATURE`` value; ``None`` when absent."""
    payment = meta.get(PAYMENT_META)
    if payment is None:
        return None
    if not isinstance(payment, Mapping):
        return MalformedPayment(
            "invalid_payment_payload", f"_meta[{PAYMENT_META!r}] must be a JSON object"
        )
    refusal = _bounded(payment)
    if refusal is not None:
        return refusal
    header = b64_json(_without_nulls(payment))
    if len(header) > PAYMENT_HEADER_BYTES_MAX:
        return MalformedPayment(
            "payment_header_too_large", f"the payment is over {PAYMENT_HEADER_BYTES_MAX} bytes"
        )
    return header


@dataclass(frozen=True, slots=True)
class Proofs:
    """What a reader shows to read a page again: the HTTP headers the edge checks."""

    headers: tuple[tuple[bytes, bytes], ...] = ()


def proofs_of(meta: Mapping[str, Any]) -> Proofs:
    """A receipt and a sign-in from ``_meta``, as headers; malformed ones are left out."""
    headers: list[tuple[bytes, bytes]] = []
    receipt = meta.get(RECEIPT_META)
    if isinstance(receipt, str) and RECEIPT_PAIR_RE.fullmatch(receipt):
        headers.append((b"cookie", receipt.encode("ascii")))
    signed = meta.get(SIGN_IN_META)
    if isinstance(signed, str) and _HEADER_VALUE_RE.match(signed):
        headers.append((SIGN_IN_WITH_X.lower().encode(), signed.encode("ascii")))
    return Proofs(tuple(headers))


def _bounded(value: Mapping[str, Any]) -> MalformedPayment | None:
    """Refuse a payment nested too deep or with too many items, walking without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    while stack:
        node, depth = stack.pop()
        if depth > _DEPTH_MAX:
            return MalformedPayment("invalid_payment_payload", "the payment nests too deep")
        children = node.values() if isinstance(node, Mapping) else node
        for child in children:
            items += 1
            if items > _ITEMS_MAX:
                return MalformedPayment("invalid_payment_payload", "the payment has too many items")
            if isinstance(child, (Mapping, list, tuple)):
                stack.append((child, depth + 1))
            elif isinstance(child, str) and len(child) > PAYMENT_HEADER_BYTES_MAX:
                return MalformedPayment("payment_header_too_large", "a payment field is too long")
            elif isinstance(child, float):
                return MalformedPayment("invalid_payment_payload", "an amount is never a float")
    return None


def _without_nulls(value: Any) -> Any:
    """The payment with ``null`` members left out (bounded already, so recursion is shallow)."""
    if isinstance(value, Mapping):
        return {str(k): _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_nulls(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON, as x402's binding writes ``content[0].text``."""
    return json.dumps(value, separators=(",", ":"))
