"""The x402 ``upto`` wire: requirements, the client's payload, the gas-sponsoring extensions.

Every shape is the spec's camelCase JSON (``specs/schemes/upto/
scheme_upto_evm.md``, ``specs/extensions/eip2612_gas_sponsoring.md`` and
``erc20_gas_sponsoring.md`` in x402-foundation/x402). ``amount`` in the
requirements is phase-dependent: the ceiling in an offer and at ``/verify``,
the actual charge at ``/settle`` (possibly 0). ``extra`` carries the
token's EIP-712 ``name`` and ``version`` and the ``facilitatorAddress`` the
payer binds into the witness.

Parsing is strict (``farthing.paywall.schemes.fields``): amounts, nonces and
times are decimal strings (a nonce may also be ``0x`` hex, as the spec's
example writes it), addresses come back checksummed, a signature is at most
4 KiB, a signed approval transaction at most :data:`SIGNED_TX_BYTES_MAX`.
Malformed input is a :class:`WireRefusal` with the spec's code and a detail
that never echoes the input; nothing here raises on what a client sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from farthing.paywall.schemes import fields
from farthing.paywall.schemes.fields import Malformed, WireRefusal
from farthing.paywall.schemes.upto.permit import UptoAuthorization
from farthing.paywall.schemes.upto.types import (
    EIP2612_KEY,
    ERC20_APPROVAL_KEY,
    ERR_PAYLOAD_FORMAT,
    ERR_SCHEME,
    SCHEME,
)
from farthing.paywall.wire import (
    X402_VERSION,
    AcceptsEntry,
    MalformedPayment,
    unb64_json_bounded,
)
from farthing.wallet.money import UINT256_MAX

__all__ = [
    "SIGNED_TX_BYTES_MAX",
    "Eip2612Permit",
    "Erc20Approval",
    "UptoPayment",
    "UptoRequirements",
    "decode_upto_payment",
    "parse_payment",
    "parse_requirements",
]

SIGNED_TX_BYTES_MAX: Final = 2048
_NETWORK_RE: Final = re.compile(r"eip155:[1-9][0-9]{0,19}")
_NONCE_HEX_RE: Final = re.compile(r"0x[0-9a-fA-F]{1,64}")
_VERSION_RE: Final = re.compile(r"[0-9]{1,8}(\.[0-9]{1,8}){0,3}")
_TEXT_MAX: Final = 2048
_TIMEOUT_MAX_S: Final = 7 * 24 * 3600
_TIME_MAX: Final = 2**64 - 1
_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True, slots=True)
class UptoRequirements(AcceptsEntry):
    """One ``upto`` ``accepts`` entry: up to ``amount`` of ``asset`` to ``pay_to``.

    ``amount`` is the ceiling in an offer and at verify, the charge at settle.
    ``facilitator_address`` is whom the payer lets settle (``extra.facilitatorAddress``).
    ``max_timeout_seconds`` 0 means the field was absent (a settle request may omit it).
    """

    network: str
    asset: str
    amount: int
    pay_to: str
    max_timeout_seconds: int
    token_name: str = ""
    token_version: str = ""
    facilitator_address: str | None = None
    scheme: str = SCHEME

    def extra_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.token_name:
            out["name"] = self.token_name
        if self.token_version:
            out["version"] = self.token_version
        if self.facilitator_address is not None:
            out["facilitatorAddress"] = self.facilitator_address
        return out

    def to_wire(self) -> dict[str, Any]:
        out = AcceptsEntry.to_wire(self)
        if not self.max_timeout_seconds:
            del out["maxTimeoutSeconds"]
        return out

    def charging(self, amount: int) -> UptoRequirements:
        """The settle-time requirements: the same terms, ``amount`` the actual charge."""
        return UptoRequirements(
            self.network, self.asset, amount, self.pay_to, self.max_timeout_seconds,
            self.token_name, self.token_version, self.facilitator_address,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Eip2612Permit:
    """``extensions.eip2612GasSponsoring.info``: the payer's EIP-2612 permit approving Permit2."""

    from_address: str
    asset: str
    spender: str
    amount: int
    nonce: int
    deadline: int
    signature: bytes
    version: str = "1"

    def to_wire(self) -> dict[str, Any]:
        return {
            "from": self.from_address,
            "asset": self.asset,
            "spender": self.spender,
            "amount": str(self.amount),
            "nonce": str(self.nonce),
            "deadline": str(self.deadline),
            "signature": fields.to_hex(self.signature),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class Erc20Approval:
    """``extensions.erc20ApprovalGasSponsoring.info``: a signed ``approve(Permit2, amount)`` transaction."""

    from_address: str
    asset: str
    spender: str
    amount: int
    signed_transaction: bytes
    version: str = "1"

    def to_wire(self) -> dict[str, Any]:
        return {
            "from": self.from_address,
            "asset": self.asset,
            "spender": self.spender,
            "amount": str(self.amount),
            "signedTransaction": fields.to_hex(self.signed_transaction),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class UptoPayment:
    """A decoded ``upto`` payment payload: the signed authorization and the terms it accepted."""

    accepted: UptoRequirements
    authorization: UptoAuthorization
    signature: bytes
    eip2612: Eip2612Permit | None = None
    erc20_approval: Erc20Approval | None = None
    resource_url: str | None = None
    # What the seller's own 402 declared (discovery), sent on to the facilitator; never a buyer's.
    declared: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def payer(self) -> str:
        return self.authorization.from_address

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "x402Version": X402_VERSION,
            "accepted": self.accepted.to_wire(),
            "payload": {
                "signature": fields.to_hex(self.signature),
                "permit2Authorization": self.authorization.to_wire(),
            },
        }
        if self.resource_url is not None:
            out["resource"] = {"url": self.resource_url}
        extensions: dict[str, Any] = {}
        if self.declared is not None:
            out["resource"] = dict(self.declared.get("resource") or out.get("resource") or {})
            extensions.update(self.declared.get("extensions") or {})
        if self.eip2612 is not None:
            extensions[EIP2612_KEY] = {"info": self.eip2612.to_wire()}
        if self.erc20_approval is not None:
            extensions[ERC20_APPROVAL_KEY] = {"info": self.erc20_approval.to_wire()}
        if extensions:
            out["extensions"] = extensions
        return out


# ---------------------------------------------------------------- parsing


def _decimal(value: object, where: str, maximum: int = UINT256_MAX) -> int:
    return fields.amount(value, where, maximum, ERR_PAYLOAD_FORMAT)


def _nonce(value: object) -> int:
    if isinstance(value, str) and _NONCE_HEX_RE.fullmatch(value):
        return int(value, 16)
    return _decimal(value, "nonce")


def _text(data: Mapping[str, Any], name: str, limit: int = 64) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise Malformed(f"extra.{name} must be a string of at most {limit} characters")
    return value


def _requirements(data: object) -> UptoRequirements:
    entry = fields.object_of(data, "requirements")
    if entry.get("scheme") != SCHEME:
        raise Malformed("scheme must be 'upto'", ERR_SCHEME)
    network = entry.get("network")
    if not isinstance(network, str) or not _NETWORK_RE.fullmatch(network):
        raise Malformed("network must be a CAIP-2 eip155 id")
    timeout = entry.get("maxTimeoutSeconds", 0)
    extra = entry.get("extra")
    extra = {} if extra is None else fields.object_of(extra, "extra")
    facilitator = extra.get("facilitatorAddress")
    return UptoRequirements(
        network=network,
        asset=fields.address(fields.need(entry, "asset", "requirements"), "asset"),
        amount=_decimal(fields.need(entry, "amount", "requirements"), "amount"),
        pay_to=fields.address(fields.need(entry, "payTo", "requirements"), "payTo"),
        max_timeout_seconds=fields.integer(timeout, "maxTimeoutSeconds", _TIMEOUT_MAX_S),
        token_name=_text(extra, "name"),
        token_version=_text(extra, "version"),
        facilitator_address=(
            None if facilitator is None else fields.address(facilitator, "facilitatorAddress")
        ),
    )


def _authorization(data: object) -> UptoAuthorization:
    auth = fields.object_of(data, "permit2Authorization")
    permitted = fields.object_of(fields.need(auth, "permitted", "authorization"), "permitted")
    witness = fields.object_of(fields.need(auth, "witness", "authorization"), "witness")
    return UptoAuthorization(
        from_address=fields.address(fields.need(auth, "from", "authorization"), "from"),
        token=fields.address(fields.need(permitted, "token", "permitted"), "permitted.token"),
        amount=_decimal(fields.need(permitted, "amount", "permitted"), "permitted.amount"),
        spender=fields.address(fields.need(auth, "spender", "authorization"), "spender"),
        nonce=_nonce(fields.need(auth, "nonce", "authorization")),
        deadline=_decimal(fields.need(auth, "deadline", "authorization"), "deadline", _TIME_MAX),
        to=fields.address(fields.need(witness, "to", "witness"), "witness.to"),
        facilitator=fields.address(
            fields.need(witness, "facilitator", "witness"), "witness.facilitator"
        ),
        valid_after=_decimal(
            fields.need(witness, "validAfter", "witness"), "witness.validAfter", _TIME_MAX
        ),
    )


def _version(info: Mapping[str, Any]) -> str:
    value = info.get("version", "1")
    if not isinstance(value, str) or not _VERSION_RE.fullmatch(value):
        raise Malformed("the extension's version must be like '1'")
    return value


def _used(extensions: Mapping[str, Any], key: str) -> bool:
    """The payer filled the extension in (its ``info`` names a ``from``), not just echoed it."""
    entry = extensions.get(key)
    if key not in extensions:
        return False
    info = entry.get("info") if isinstance(entry, Mapping) else None
    return not isinstance(info, Mapping) or "from" in info


def _eip2612(data: object) -> Eip2612Permit:
    info = fields.object_of(fields.object_of(data, EIP2612_KEY).get("info"), "info")
    return Eip2612Permit(
        from_address=fields.address(fields.need(info, "from", "info"), "info.from"),
        asset=fields.address(fields.need(info, "asset", "info"), "info.asset"),
        spender=fields.address(fields.need(info, "spender", "info"), "info.spender"),
        amount=_decimal(fields.need(info, "amount", "info"), "info.amount"),
        nonce=_decimal(fields.need(info, "nonce", "info"), "info.nonce"),
        deadline=_decimal(fields.need(info, "deadline", "info"), "info.deadline"),
        signature=fields.signature(fields.need(info, "signature", "info"), "info.signature"),
        version=_version(info),
    )


def _erc20_approval(data: object) -> Erc20Approval:
    info = fields.object_of(fields.object_of(data, ERC20_APPROVAL_KEY).get("info"), "info")
    raw = fields.need(info, "signedTransaction", "info")
    if not isinstance(raw, str) or len(raw) > 2 + 2 * SIGNED_TX_BYTES_MAX:
        raise Malformed("info.signedTransaction must be a signed transaction's hex")
    return Erc20Approval(
        from_address=fields.address(fields.need(info, "from", "info"), "info.from"),
        asset=fields.address(fields.need(info, "asset", "info"), "info.asset"),
        spender=fields.address(fields.need(info, "spender", "info"), "info.spender"),
        amount=_decimal(fields.need(info, "amount", "info"), "info.amount"),
        signed_transaction=fields.signature(raw, "info.signedTransaction"),
        version=_version(info),
    )


def _payment(data: object) -> UptoPayment:
    envelope = fields.object_of(data, "paymentPayload")
    version = envelope.get("x402Version")
    if isinstance(version, bool) or version != X402_VERSION:
        raise Malformed("x402Version must be 2")
    accepted = _requirements(fields.need(envelope, "accepted", "paymentPayload"))
    inner = fields.object_of(fields.need(envelope, "payload", "paymentPayload"), "payload")
    authorization = _authorization(fields.need(inner, "permit2Authorization", "payload"))
    signature = fields.signature(fields.need(inner, "signature", "payload"), "signature")
    extensions = envelope.get("extensions")
    extensions = {} if extensions is None else fields.object_of(extensions, "extensions")
    # The x402 SDK's clients echo the server's declared extension entries (info
    # without the signed fields) even when they sign none: that is not a use.
    eip2612 = _eip2612(extensions[EIP2612_KEY]) if _used(extensions, EIP2612_KEY) else None
    erc20 = (
        _erc20_approval(extensions[ERC20_APPROVAL_KEY])
        if _used(extensions, ERC20_APPROVAL_KEY)
        else None
    )
    resource = envelope.get("resource")
    url = resource.get("url") if isinstance(resource, dict) else None
    return UptoPayment(
        accepted=accepted,
        authorization=authorization,
        signature=signature,
        eip2612=eip2612,
        erc20_approval=erc20,
        resource_url=url if isinstance(url, str) and len(url) <= _TEXT_MAX else None,
    )


def parse_requirements(data: object) -> UptoRequirements | WireRefusal:
    """An ``upto`` ``paymentRequirements`` (or ``accepted``) object, or why not."""
    return _refusing(_requirements, data)


def parse_payment(data: object) -> UptoPayment | WireRefusal:
    """An ``upto`` ``paymentPayload`` object, or why not."""
    return _refusing(_payment, data)


def _refusing(parse: Callable[[object], _Parsed], data: object) -> _Parsed | WireRefusal:
    refused = fields.refusing(parse, data)
    if isinstance(refused, WireRefusal) and not refused.reason:
        return WireRefusal(ERR_PAYLOAD_FORMAT, refused.detail)
    return refused


def decode_upto_payment(header: str, *, bytes_max: int) -> UptoPayment | MalformedPayment | None:
    """A ``PAYMENT-SIGNATURE`` header of the ``upto`` scheme; ``None`` for another scheme.

    ``None`` hands the header on to the next scheme's decoder, which gives the
    usual 400 reasons for headers that are not base64 or JSON at all.
    """
    if len(header) > bytes_max:
        return None
    data = unb64_json_bounded(header, bytes_max=bytes_max)
    accepted = data.get("accepted") if isinstance(data, dict) else None
    if not isinstance(accepted, dict) or accepted.get("scheme") != SCHEME:
        return None
    parsed = parse_payment(data)
    if isinstance(parsed, WireRefusal):
        return MalformedPayment(parsed.reason, parsed.detail)
    return parsed
