"""The x402 envelope of a ``batch-settlement`` payment: requirements, payment, results.

The exact scheme's types (``farthing.paywall.wire``) insist on a positive
price and an EIP-3009 authorization; a channel payment carries a channel
payload instead, and the server's own ``claim`` and ``settle`` requests carry
``amount: "0"`` and ``maxTimeoutSeconds: 0`` (as the reference server sends
them). These types hold that envelope:

- :class:`ChannelRequirements`: one ``accepts`` entry (``extra`` kept as JSON,
  read with ``extras.parse_extra`` where its fields matter);
- :class:`ChannelPayment`: a decoded ``PAYMENT-SIGNATURE`` (or a
  facilitator request's ``paymentPayload``) whose ``payload`` is still raw
  JSON, parsed by ``wire`` (or ``redeem``) per payload type;
- the facilitator answers ``/verify`` and ``/settle`` with
  :class:`farthing.paywall.wire.VerifyResult` and ``SettleResult``, as every
  scheme does, ``extra`` carrying the channel's state.

Nothing here raises on client input: :func:`decode_channel_payment` answers
``None`` for a payment of another scheme, and a :class:`MalformedPayment` with
a snake_case reason for one it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_INVALID_PAYLOAD_TYPE,
    ERR_INVALID_SCHEME,
    SCHEME,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.wire import (
    X402_VERSION,
    AcceptsEntry,
    MalformedPayment,
    b64_json,
    unb64_json_bounded,
)
from farthing.wallet.address import checksum, is_address

__all__ = [
    "ChannelPayment",
    "ChannelRequirements",
    "decode_channel_payment",
    "parse_channel_payment",
    "parse_channel_requirements",
]

_NETWORK_RE: Final = re.compile(r"eip155:[0-9]{1,20}")
_AMOUNT_RE: Final = re.compile(r"(0|[1-9][0-9]{0,77})")
_TEXT_MAX: Final = 2048


@dataclass(frozen=True, slots=True)
class ChannelRequirements(AcceptsEntry):
    """One ``batch-settlement`` entry of ``accepts``: the ceiling ``amount`` per request."""

    network: str
    asset: str
    amount: int
    pay_to: str
    max_timeout_seconds: int
    extra: Mapping[str, Any] = field(default_factory=dict)
    scheme: str = SCHEME

    def extra_wire(self) -> dict[str, Any]:
        return dict(self.extra)


def parse_channel_requirements(data: object) -> ChannelRequirements | WireRefusal:
    """An ``accepts``/``accepted``/``paymentRequirements`` object; refusals carry the spec's code."""
    if not isinstance(data, Mapping):
        return WireRefusal(ERR_INVALID_SCHEME, "the requirements must be an object")
    scheme, network = data.get("scheme"), data.get("network")
    asset, pay_to = data.get("asset"), data.get("payTo")
    amount, timeout = data.get("amount"), data.get("maxTimeoutSeconds", 0)
    extra = data.get("extra") or {}
    if not isinstance(scheme, str) or len(scheme) > 64:
        return WireRefusal(ERR_INVALID_SCHEME, "scheme must be a string")
    if not isinstance(network, str) or not _NETWORK_RE.fullmatch(network):
        return WireRefusal(ERR_INVALID_SCHEME, "network must be a CAIP-2 eip155 id")
    if not isinstance(asset, str) or not is_address(asset):
        return WireRefusal(ERR_INVALID_SCHEME, "asset must be an address")
    if not isinstance(pay_to, str) or not is_address(pay_to):
        return WireRefusal(ERR_INVALID_SCHEME, "payTo must be an address")
    if not isinstance(amount, str) or not _AMOUNT_RE.fullmatch(amount):
        return WireRefusal(ERR_INVALID_SCHEME, "amount must be a decimal string of atomic units")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= 7 * 86400:
        return WireRefusal(ERR_INVALID_SCHEME, "maxTimeoutSeconds must be 0 s to a week")
    if not isinstance(extra, Mapping):
        return WireRefusal(ERR_INVALID_SCHEME, "extra must be an object")
    return ChannelRequirements(
        network=network,
        asset=checksum(asset),
        amount=int(amount),
        pay_to=checksum(pay_to),
        max_timeout_seconds=timeout,
        extra=dict(extra),
        scheme=scheme,
    )


@dataclass(frozen=True, slots=True)
class ChannelPayment:
    """A batch-settlement payment: its raw ``payload`` and the terms it ``accepted``."""

    accepted: ChannelRequirements
    payload: Mapping[str, Any]
    resource_url: str | None = None
    # What the seller's own 402 said of the resource ({"resource": {...},
    # "extensions": {...}}, farthing.paywall.discovery), sent on to the
    # facilitator, which catalogs it. Set by the seller, never read from a buyer.
    declared: Mapping[str, Any] | None = field(default=None, compare=False)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "x402Version": X402_VERSION,
            "payload": dict(self.payload),
            "accepted": self.accepted.to_wire(),
        }
        if self.resource_url is not None:
            out["resource"] = {"url": self.resource_url}
        if self.declared is not None:
            out["resource"] = dict(self.declared.get("resource") or out.get("resource") or {})
            if self.declared.get("extensions"):
                out["extensions"] = dict(self.declared["extensions"])
        return out

    def header(self) -> str:
        return b64_json(self.to_wire())


def parse_channel_payment(data: object) -> ChannelPayment | WireRefusal:
    """A ``paymentPayload`` JSON object of the batch-settlement scheme."""
    if not isinstance(data, Mapping):
        return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "the payment must be an object")
    version = data.get("x402Version")
    if isinstance(version, bool) or version != X402_VERSION:
        return WireRefusal(ERR_INVALID_SCHEME, "x402Version must be 2")
    accepted = parse_channel_requirements(data.get("accepted"))
    if isinstance(accepted, WireRefusal):
        return accepted
    payload = data.get("payload")
    if not isinstance(payload, Mapping):
        return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "payload must be an object")
    resource = data.get("resource")
    url = resource.get("url") if isinstance(resource, Mapping) else None
    return ChannelPayment(
        accepted,
        dict(payload),
        url if isinstance(url, str) and len(url) <= _TEXT_MAX else None,
    )


def decode_channel_payment(
    header: str, *, bytes_max: int
) -> ChannelPayment | MalformedPayment | None:
    """A ``PAYMENT-SIGNATURE`` header of the batch-settlement scheme; ``None`` for another scheme.

    ``None`` hands the header to the exact scheme's decoder, which gives the
    usual 400 reasons for headers that are not base64 or JSON at all.
    """
    if len(header) > bytes_max:
        return None
    data = unb64_json_bounded(header, bytes_max=bytes_max)
    accepted = data.get("accepted") if isinstance(data, dict) else None
    if not isinstance(accepted, dict) or accepted.get("scheme") != SCHEME:
        return None
    parsed = parse_channel_payment(data)
    if isinstance(parsed, WireRefusal):
        return MalformedPayment(parsed.reason, parsed.detail)
    return parsed
