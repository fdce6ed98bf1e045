"""The x402 v2 wire format: requirements, payloads, results and their headers.

Facts (checked against x402 2.25.0 and @x402/fetch 2.27.0, see DESIGN §4):

* ``PAYMENT-REQUIRED`` is the standard base64 of camelCase JSON
  ``{"x402Version":2,"error","resource":{...},"accepts":[...]}``;
* the client answers with ``PAYMENT-SIGNATURE``, base64 JSON
  ``{"x402Version":2,"payload":{"authorization":{...},"signature"},"accepted":{...}}``;
* ``PAYMENT-RESPONSE`` carries the settlement, ``{"success","transaction","network","payer"}``.

Decoding untrusted headers never raises: :func:`decode_payment_signature`
returns a :class:`PaymentPayload` or a :class:`MalformedPayment` with a
snake_case reason, which the middleware answers with a 400. Sizes are bounded
before any parsing work.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from farthing.wallet.address import checksum, is_address
from farthing.wallet.eip3009 import Authorization, SignedAuthorization, TokenDomain
from farthing.wallet.errors import AddressError, AmountError, AuthorizationError
from farthing.wallet.money import UINT256_MAX
from farthing.web.jsonbody import JsonBodyError, loads_bounded

__all__ = [
    "PAYMENT_HEADER_BYTES_MAX",
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "SCHEME_EXACT",
    "X402_VERSION",
    "AcceptsEntry",
    "MalformedPayment",
    "PaymentPayload",
    "PaymentRequired",
    "PaymentRequirements",
    "ResourceInfo",
    "SettleResult",
    "VerifyResult",
    "b64_json",
    "decode_payment_signature",
    "encode_payment_signature",
    "unb64_json",
    "unb64_json_bounded",
]

X402_VERSION: Final = 2
SCHEME_EXACT: Final = "exact"
PAYMENT_REQUIRED_HEADER: Final = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE_HEADER: Final = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE_HEADER: Final = "PAYMENT-RESPONSE"
# An exact-scheme header is about 1.3 KB; 8 KiB leaves room for extensions
# while keeping a hostile header from costing more than a glance.
PAYMENT_HEADER_BYTES_MAX: Final = 8192

_NETWORK_RE: Final = re.compile(r"eip155:[0-9]{1,20}")
_TEXT_MAX: Final = 2048
_AMOUNT_DIGITS_MAX: Final = 80  # a uint256 has 78; more is not an amount
# x402 headers nest a few objects deep (payload → authorization, accepted → extra);
# clients echo the 402's extensions too, and a bazaar declaration's JSON schema
# (extensions → bazaar → schema → properties → input → properties → …) needs
# more: the discovery catalog's own bound (12) under the payload's three levels.
HEADER_JSON_DEPTH_MAX: Final = 16


def b64_json(data: Mapping[str, Any]) -> str:
    """Standard base64 of compact JSON: the encoding of every x402 header."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def unb64_json(text: str) -> Any:
    """Inverse of :func:`b64_json` for trusted input (tests, our own clients)."""
    return json.loads(base64.b64decode(text, validate=True))


def unb64_json_bounded(text: str, *, bytes_max: int) -> Any:
    """:func:`unb64_json` for untrusted input: ``None`` unless it is bounded base64 JSON text."""
    if len(text) > bytes_max:
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return loads_bounded(raw, depth_max=HEADER_JSON_DEPTH_MAX, bytes_max=bytes_max)
    except (binascii.Error, ValueError):  # JsonBodyError is a ValueError
        return None


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """What is being paid for: x402's ``resource`` object."""

    url: str
    description: str = ""
    mime_type: str = ""

    def to_wire(self) -> dict[str, str]:
        return {"url": self.url, "description": self.description, "mimeType": self.mime_type}


class AcceptsEntry:
    """What every scheme's ``accepts`` entry shares: its terms, its chain, its wire form.

    A scheme's requirements dataclass mixes this in and writes its own
    ``extra`` (:meth:`extra_wire`); the rest of the JSON is written here once.
    """

    __slots__ = ()

    scheme: str
    network: str
    asset: str
    amount: int
    pay_to: str
    max_timeout_seconds: int

    @property
    def chain_id(self) -> int:
        return int(self.network.split(":", 1)[1])

    def extra_wire(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_wire(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "network": self.network,
            "asset": self.asset,
            "amount": str(self.amount),
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": self.extra_wire(),
        }


@dataclass(frozen=True, slots=True)
class PaymentRequirements(AcceptsEntry):
    """One ``accepts`` entry of the exact scheme: pay ``amount`` of ``asset`` to ``pay_to``.

    ``token_name`` and ``token_version`` are the token's EIP-712 domain
    fields, sent as ``extra.name`` and ``extra.version``.
    """

    network: str
    asset: str
    amount: int
    pay_to: str
    max_timeout_seconds: int
    token_name: str
    token_version: str
    scheme: str = SCHEME_EXACT

    def __post_init__(self) -> None:
        object.__setattr__(self, "asset", checksum(self.asset))
        object.__setattr__(self, "pay_to", checksum(self.pay_to))
        # fullmatch: with match, "$" also accepts a trailing newline ("eip155:1\n").
        if not isinstance(self.network, str) or not _NETWORK_RE.fullmatch(self.network):
            raise AuthorizationError(f"network must be a CAIP-2 eip155 id, got {self.network!r}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise AmountError("amount must be an int of atomic units")
        if not 0 < self.amount <= UINT256_MAX:
            raise AmountError("amount must be positive and fit in uint256")
        if not 0 < self.max_timeout_seconds <= 7 * 24 * 3600:
            raise AuthorizationError("max_timeout_seconds must be between 1 s and a week")

    def domain(self) -> TokenDomain:
        """The EIP-712 domain a payment for these requirements is signed over."""
        return TokenDomain(self.token_name, self.token_version, self.chain_id, self.asset)

    def extra_wire(self) -> dict[str, Any]:
        return {"name": self.token_name, "version": self.token_version}

    @classmethod
    def from_wire(cls, data: object) -> PaymentRequirements:
        """Parse an ``accepts`` / ``accepted`` entry; raises ``AuthorizationError``."""
        if not isinstance(data, Mapping):
            raise AuthorizationError("accepted must be a JSON object")
        extra = data.get("extra")
        if not isinstance(extra, Mapping):
            raise AuthorizationError("accepted.extra must be an object with name and version")
        amount = data.get("amount")
        timeout = data.get("maxTimeoutSeconds")
        if not isinstance(amount, str) or not amount.isascii() or not amount.isdigit():
            raise AuthorizationError("accepted.amount must be a string of digits")
        if len(amount) > 78:
            raise AuthorizationError("accepted.amount is too long")
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise AuthorizationError("accepted.maxTimeoutSeconds must be an integer")
        for key in ("scheme", "network", "asset", "payTo"):
            if not isinstance(data.get(key), str) or len(data[key]) > _TEXT_MAX:
                raise AuthorizationError(f"accepted.{key} must be a string")
        for key in ("name", "version"):
            if not isinstance(extra.get(key), str) or len(extra[key]) > 256:
                raise AuthorizationError(f"accepted.extra.{key} must be a string")
        for key in ("asset", "payTo"):
            if not is_address(data[key]):
                raise AuthorizationError(f"accepted.{key} must be an address")
        try:
            return cls(
                network=data["network"],
                asset=data["asset"],
                amount=int(amount),
                pay_to=data["payTo"],
                max_timeout_seconds=timeout,
                token_name=extra["name"],
                token_version=extra["version"],
                scheme=data["scheme"],
            )
        except (AddressError, AmountError) as exc:
            raise AuthorizationError(f"accepted: {exc}") from None


@dataclass(frozen=True, slots=True)
class PaymentRequired:
    """The 402 challenge: what the ``PAYMENT-REQUIRED`` header and body carry."""

    resource: ResourceInfo
    accepts: tuple[PaymentRequirements, ...]
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"x402Version": X402_VERSION}
        if self.error is not None:
            out["error"] = self.error
        out["resource"] = self.resource.to_wire()
        out["accepts"] = [requirement.to_wire() for requirement in self.accepts]
        return out

    def header(self) -> str:
        return b64_json(self.to_wire())


@dataclass(frozen=True, slots=True)
class PaymentPayload:
    """A decoded ``PAYMENT-SIGNATURE``: the signed authorization and the terms it accepted."""

    accepted: PaymentRequirements
    authorization: Authorization
    signature: bytes
    resource_url: str | None = None
    x402_version: int = X402_VERSION
    # What the seller's own 402 said of the resource ({"resource": {...},
    # "extensions": {...}}, farthing.paywall.discovery), sent on to the
    # facilitator, which catalogs it. Set by the seller, never read from a buyer.
    declared: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def payer(self) -> str:
        return self.authorization.from_address

    def signed(self, domain: TokenDomain) -> SignedAuthorization:
        """The signed authorization over ``domain`` (the server's, never the client's claim)."""
        return SignedAuthorization(self.authorization, self.signature, domain)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "x402Version": self.x402_version,
            "payload": {
                "authorization": self.authorization.to_wire(),
                "signature": "0x" + self.signature.hex(),
            },
            "accepted": self.accepted.to_wire(),
        }
        if self.resource_url is not None:
            out["resource"] = {"url": self.resource_url}
        if self.declared is not None:
            out["resource"] = dict(self.declared.get("resource") or out.get("resource") or {})
            if self.declared.get("extensions"):
                out["extensions"] = dict(self.declared["extensions"])
        return out

    @classmethod
    def from_wire(cls, data: object) -> PaymentPayload:
        """Parse the JSON object of a payment payload; raises ``AuthorizationError``."""
        if not isinstance(data, Mapping):
            raise AuthorizationError("the payment payload must be a JSON object")
        version = data.get("x402Version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise AuthorizationError("x402Version must be an integer")
        if version != X402_VERSION:
            raise AuthorizationError(f"x402Version {version} is not supported (want 2)")
        inner = data.get("payload")
        if not isinstance(inner, Mapping):
            raise AuthorizationError("payload must be a JSON object")
        accepted = PaymentRequirements.from_wire(data.get("accepted"))
        signed_fields = SignedAuthorization.from_wire(inner, accepted.domain())
        resource = data.get("resource")
        url = resource.get("url") if isinstance(resource, Mapping) else None
        return cls(
            accepted=accepted,
            authorization=signed_fields.authorization,
            signature=signed_fields.signature,
            resource_url=url if isinstance(url, str) and len(url) <= _TEXT_MAX else None,
        )


@dataclass(frozen=True, slots=True)
class MalformedPayment:
    """A payment header that could not be decoded: a 400 with this reason."""

    reason: str
    message: str


def decode_payment_signature(
    header: str, *, bytes_max: int = PAYMENT_HEADER_BYTES_MAX
) -> PaymentPayload | MalformedPayment:
    """Decode an untrusted ``PAYMENT-SIGNATURE`` header into a payload or a reason."""
    if len(header) > bytes_max:
        return MalformedPayment(
            "payment_header_too_large", f"the payment header is over {bytes_max} bytes"
        )
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return MalformedPayment(
            "payment_header_not_base64", "the payment header is not standard base64"
        )
    try:
        data = loads_bounded(raw, depth_max=HEADER_JSON_DEPTH_MAX, bytes_max=bytes_max)
    except JsonBodyError as exc:
        if exc.reason in ("json_too_deep", "invalid_text"):
            return MalformedPayment("invalid_payment_payload", str(exc))
        return MalformedPayment("payment_header_not_json", "the payment header is not JSON")
    version = data.get("x402Version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != X402_VERSION:
        return MalformedPayment(
            "unsupported_x402_version", f"x402Version {version} is not supported (want 2)"
        )
    try:
        return PaymentPayload.from_wire(data)
    except (AuthorizationError, AddressError, AmountError) as exc:
        return MalformedPayment("invalid_payment_payload", str(exc))


def encode_payment_signature(payload: PaymentPayload) -> str:
    """The ``PAYMENT-SIGNATURE`` header value for ``payload``."""
    return b64_json(payload.to_wire())


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """A facilitator's answer to "is this payment good?" in any scheme: valid, or a reason.

    ``extra`` is the scheme's state the answer was judged on, on the wire as
    is: a channel's on-chain state, an escrow payment's amounts; ``exact`` has
    none.
    """

    valid: bool
    reason: str | None = None
    payer: str | None = None
    message: str | None = None
    extra: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"isValid": self.valid}
        if self.reason is not None:
            out["invalidReason"] = self.reason
        if self.message is not None:
            out["invalidMessage"] = self.message
        if self.payer is not None:
            out["payer"] = self.payer
        if self.extra is not None:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_wire(cls, data: object) -> VerifyResult:
        """A ``/verify`` answer; anything that is not one raises ``AuthorizationError``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("isValid"), bool):
            raise AuthorizationError("a verify response needs a boolean isValid")
        extra = data.get("extra")
        return cls(
            valid=data["isValid"],
            reason=_opt_str(data, "invalidReason"),
            payer=_opt_str(data, "payer"),
            message=_opt_str(data, "invalidMessage"),
            extra=dict(extra) if isinstance(extra, Mapping) else None,
        )


@dataclass(frozen=True, slots=True)
class SettleResult:
    """The outcome of a ``/settle`` in any scheme; ``pending`` means it is not known yet.

    A pending settlement was (or may have been) sent: it is resolved from the
    chain later and must never be answered by asking the payer to pay again.
    ``amount`` is what the call moved (for ``exact`` the price; for
    ``batch-settlement`` a deposit, claim, sweep or refund; for
    ``auth-capture`` the hold, the capture, the refund or what a void
    released). ``extra`` is the scheme's state after the call, on the wire as
    is: a channel's ``channelState``, an escrow payment's amounts; ``exact``
    has none.
    """

    success: bool
    network: str
    transaction: str = ""
    payer: str | None = None
    amount: int | None = None
    reason: str | None = None
    message: str | None = None
    block_number: int | None = None
    pending: bool = False
    extra: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "success": self.success,
            "transaction": self.transaction,
            "network": self.network,
        }
        if self.payer is not None:
            out["payer"] = self.payer
        if self.amount is not None:
            out["amount"] = str(self.amount)
        if self.reason is not None:
            out["errorReason"] = self.reason
        if self.message is not None:
            out["errorMessage"] = self.message
        if self.extra is not None:
            out["extra"] = dict(self.extra)
        return out

    def header(self) -> str:
        """The ``PAYMENT-RESPONSE`` header value."""
        return b64_json(self.to_wire())

    @classmethod
    def from_wire(cls, data: object) -> SettleResult:
        """A ``/settle`` answer; anything that is not one raises ``AuthorizationError``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("success"), bool):
            raise AuthorizationError("a settle response needs a boolean success")
        network, transaction = data.get("network"), data.get("transaction", "")
        if not isinstance(network, str):
            raise AuthorizationError("a settle response needs a network")
        if not isinstance(transaction, str):
            raise AuthorizationError("a settle response's transaction must be a string")
        amount, extra = data.get("amount"), data.get("extra")
        reason = _opt_str(data, "errorReason")
        return cls(
            success=data["success"],
            network=network,
            transaction=transaction,
            payer=_opt_str(data, "payer"),
            amount=(
                int(amount)
                if isinstance(amount, str) and amount.isdigit() and len(amount) < _AMOUNT_DIGITS_MAX
                else None
            ),
            reason=reason,
            message=_opt_str(data, "errorMessage"),
            pending=reason == "settlement_pending",
            extra=dict(extra) if isinstance(extra, Mapping) else None,
        )


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None
