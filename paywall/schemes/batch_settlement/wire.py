"""The x402 ``batch-settlement`` wire: payloads, requirements ``extra`` and response ``extra``.

Every shape here is the spec's camelCase JSON (``specs/schemes/batch-settlement/
scheme_batch_settlement_evm.md`` in x402-foundation/x402). Parsing is strict:

- amounts are decimal strings of a ``uint128`` (``"1000"``), never numbers or
  floats, and become ``int``;
- ``withdrawDelay`` and ``withdrawRequestedAt`` are JSON integers (the spec's
  ``number``), never booleans;
- addresses come back checksummed, ``bytes32`` and signatures as ``bytes``.

Malformed input is a :class:`WireRefusal` value carrying the spec's error code
as its ``reason`` (``invalid_batch_settlement_evm_voucher_payload``, …) and a
short ``detail`` that never echoes the input; nothing here raises on what a
client sends. ``to_wire()`` gives the JSON back, so ``parse(x.to_wire()) == x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from farthing.paywall.schemes.batch_settlement.contract import VoucherClaim
from farthing.paywall.schemes.batch_settlement.vouchers import (
    UINT128_MAX,
    WITHDRAW_DELAY_MAX_S,
    WITHDRAW_DELAY_MIN_S,
    ChannelConfig,
    SignedVoucher,
)
from farthing.wallet.address import checksum, is_address
from farthing.wallet.errors import WalletError

__all__ = [
    "ASSET_TRANSFER_METHODS",
    "ERR_AUTHORIZER_NOT_CONFIGURED",
    "ERR_CHANNEL_BUSY",
    "ERR_CHANNEL_ID_MISMATCH",
    "ERR_CHANNEL_NOT_FOUND",
    "ERR_CHANNEL_STATE_READ_FAILED",
    "ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE",
    "ERR_CLAIM_PAYLOAD",
    "ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED",
    "ERR_CUMULATIVE_AMOUNT_MISMATCH",
    "ERR_CUMULATIVE_EXCEEDS_BALANCE",
    "ERR_DEPOSIT_PAYLOAD",
    "ERR_INVALID_CHANNEL_ID",
    "ERR_INVALID_PAYLOAD_TYPE",
    "ERR_INVALID_SCHEME",
    "ERR_INVALID_VOUCHER_SIGNATURE",
    "ERR_MISSING_EIP712_DOMAIN",
    "ERR_NETWORK_MISMATCH",
    "ERR_PERMIT2_AUTHORIZATION_REQUIRED",
    "ERR_RECEIVER_AUTHORIZER_MISMATCH",
    "ERR_RECEIVER_MISMATCH",
    "ERR_REFUND_AMOUNT_INVALID",
    "ERR_REFUND_PAYLOAD",
    "ERR_SETTLE_PAYLOAD",
    "ERR_TOKEN_MISMATCH",
    "ERR_VERIFICATION_STATE_UNAVAILABLE",
    "ERR_VOUCHER_PAYLOAD",
    "ERR_WITHDRAW_DELAY_MISMATCH",
    "ERR_WITHDRAW_DELAY_OUT_OF_RANGE",
    "PAYLOAD_CLAIM",
    "PAYLOAD_DEPOSIT",
    "PAYLOAD_REFUND",
    "PAYLOAD_SETTLE",
    "PAYLOAD_VOUCHER",
    "SCHEME",
    "SIGNATURE_BYTES_MAX",
    "BatchExtra",
    "ChannelStateWire",
    "ClaimPayload",
    "DepositPayload",
    "Erc3009Deposit",
    "PaymentResponseExtra",
    "RefundPayload",
    "SettlePayload",
    "VoucherPayload",
    "VoucherStateWire",
    "WireRefusal",
    "parse_claim_payload",
    "parse_client_payload",
    "parse_extra",
    "parse_response_extra",
    "parse_settle_payload",
]

SCHEME: Final = "batch-settlement"

PAYLOAD_DEPOSIT: Final = "deposit"
PAYLOAD_VOUCHER: Final = "voucher"
PAYLOAD_REFUND: Final = "refund"
PAYLOAD_CLAIM: Final = "claim"
PAYLOAD_SETTLE: Final = "settle"

ASSET_TRANSFER_METHODS: Final = frozenset({"eip3009", "permit2"})

# ERC-1271 wallets may sign with more than 65 bytes; this bounds what we hold.
SIGNATURE_BYTES_MAX: Final = 4096

# The spec's error codes: part of the wire, so spelled exactly as the spec does.
_PREFIX: Final = "invalid_batch_settlement_evm_"
ERR_INVALID_SCHEME: Final = _PREFIX + "scheme"
ERR_NETWORK_MISMATCH: Final = _PREFIX + "network_mismatch"
ERR_MISSING_EIP712_DOMAIN: Final = _PREFIX + "missing_eip712_domain"
ERR_INVALID_PAYLOAD_TYPE: Final = _PREFIX + "payload_type"
ERR_CHANNEL_NOT_FOUND: Final = _PREFIX + "channel_not_found"
ERR_CHANNEL_ID_MISMATCH: Final = _PREFIX + "channel_id_mismatch"
ERR_CHANNEL_STATE_READ_FAILED: Final = _PREFIX + "channel_state_read_failed"
ERR_RECEIVER_MISMATCH: Final = _PREFIX + "receiver_mismatch"
ERR_RECEIVER_AUTHORIZER_MISMATCH: Final = _PREFIX + "receiver_authorizer_mismatch"
ERR_AUTHORIZER_NOT_CONFIGURED: Final = _PREFIX + "authorizer_not_configured"
ERR_TOKEN_MISMATCH: Final = _PREFIX + "token_mismatch"
ERR_WITHDRAW_DELAY_MISMATCH: Final = _PREFIX + "withdraw_delay_mismatch"
ERR_WITHDRAW_DELAY_OUT_OF_RANGE: Final = _PREFIX + "withdraw_delay_out_of_range"
ERR_INVALID_VOUCHER_SIGNATURE: Final = _PREFIX + "voucher_signature"
ERR_CUMULATIVE_EXCEEDS_BALANCE: Final = _PREFIX + "cumulative_exceeds_balance"
ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED: Final = _PREFIX + "cumulative_below_claimed"
ERR_CUMULATIVE_AMOUNT_MISMATCH: Final = _PREFIX + "cumulative_amount_mismatch"
ERR_DEPOSIT_PAYLOAD: Final = _PREFIX + "deposit_payload"
ERR_VOUCHER_PAYLOAD: Final = _PREFIX + "voucher_payload"
ERR_REFUND_PAYLOAD: Final = _PREFIX + "refund_payload"
ERR_REFUND_AMOUNT_INVALID: Final = _PREFIX + "refund_amount_invalid"
ERR_CLAIM_PAYLOAD: Final = _PREFIX + "claim_payload"
ERR_SETTLE_PAYLOAD: Final = _PREFIX + "settle_payload"
ERR_PERMIT2_AUTHORIZATION_REQUIRED: Final = _PREFIX + "permit2_authorization_required"
ERR_CHANNEL_BUSY: Final = _PREFIX + "channel_busy"
ERR_INVALID_CHANNEL_ID: Final = _PREFIX + "channel_id_invalid"
ERR_VERIFICATION_STATE_UNAVAILABLE: Final = _PREFIX + "verification_state_unavailable"
ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE: Final = _PREFIX + "charge_exceeds_signed_cumulative"

_AMOUNT_RE: Final = re.compile(r"(0|[1-9][0-9]{0,38})")
_BYTES32_RE: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX_RE: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
_UINT256_MAX: Final = 2**256 - 1
_UINT64_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class WireRefusal:
    """Why a wire object was refused: the spec's code and a detail safe to log."""

    reason: str
    detail: str


class _Malformed(Exception):
    """Internal: unwinds a parse to its entry point, where it becomes a WireRefusal."""


def _field(data: dict[str, Any], name: str, *, where: str) -> Any:
    if name not in data:
        raise _Malformed(f"{where} is missing {name}")
    return data[name]


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{where} must be an object")
    return value


def _amount(value: object, where: str, maximum: int = UINT128_MAX) -> int:
    # Strings only: a JSON number may have passed through a float on the way.
    if not isinstance(value, str) or not _AMOUNT_RE.fullmatch(value):
        raise _Malformed(f"{where} must be a decimal string of atomic units")
    amount = int(value)
    if amount > maximum:
        raise _Malformed(f"{where} is out of range")
    return amount


def _integer(value: object, where: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _Malformed(f"{where} must be a non-negative JSON integer")
    return value


def _address(value: object, where: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise _Malformed(f"{where} must be a 20-byte hex address")
    return str(checksum(value))


def _bytes32(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not _BYTES32_RE.fullmatch(value):
        raise _Malformed(f"{where} must be 0x and 64 hex digits")
    return bytes.fromhex(value[2:])


def _signature(value: object, where: str) -> bytes:
    if (
        not isinstance(value, str)
        or len(value) > 2 + 2 * SIGNATURE_BYTES_MAX
        or not _HEX_RE.fullmatch(value)
    ):
        raise _Malformed(f"{where} must be 0x-prefixed hex bytes")
    return bytes.fromhex(value[2:])


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


_CONFIG_FIELDS: Final = (
    "payer",
    "payerAuthorizer",
    "receiver",
    "receiverAuthorizer",
    "token",
    "withdrawDelay",
    "salt",
)


def _config(value: object, where: str) -> ChannelConfig:
    data = _object(value, where)
    raw = tuple(_field(data, name, where=where) for name in _CONFIG_FIELDS)
    if all(type(v) is str for v in raw[:5]) and type(raw[5]) is int and type(raw[6]) is str:
        # A server sees the same few configs on every voucher; the parse is pure.
        return _config_cached(raw, where)
    return _config_parsed(raw, where)


@lru_cache(maxsize=4096)
def _config_cached(raw: tuple[Any, ...], where: str) -> ChannelConfig:
    return _config_parsed(raw, where)  # a refusal raises, and is not kept


def _config_parsed(raw: tuple[Any, ...], where: str) -> ChannelConfig:
    payer, payer_authorizer, receiver, receiver_authorizer, token, delay, salt = raw
    try:
        return ChannelConfig(
            payer=_address(payer, f"{where}.payer"),
            payer_authorizer=_address(payer_authorizer, f"{where}.payerAuthorizer"),
            receiver=_address(receiver, f"{where}.receiver"),
            receiver_authorizer=_address(receiver_authorizer, f"{where}.receiverAuthorizer"),
            token=_address(token, f"{where}.token"),
            withdraw_delay_s=_integer(delay, f"{where}.withdrawDelay", 2**40 - 1),
            salt=_bytes32(salt, f"{where}.salt"),
        )
    except WalletError:  # pragma: no cover - every field was checked above
        raise _Malformed(f"{where} is not a channel config") from None


def _voucher(value: object, where: str) -> SignedVoucher:
    data = _object(value, where)
    return SignedVoucher(
        channel_id=_bytes32(_field(data, "channelId", where=where), f"{where}.channelId"),
        max_claimable_amount=_amount(
            _field(data, "maxClaimableAmount", where=where), f"{where}.maxClaimableAmount"
        ),
        signature=_signature(_field(data, "signature", where=where), f"{where}.signature"),
    )


def _voucher_wire(voucher: SignedVoucher) -> dict[str, str]:
    return {
        "channelId": _hex(voucher.channel_id),
        "maxClaimableAmount": str(voucher.max_claimable_amount),
        "signature": _hex(voucher.signature),
    }


# ---------------------------------------------------------------- client payloads


@dataclass(frozen=True, slots=True)
class Erc3009Deposit:
    """``deposit.authorization.erc3009Authorization``: the payer's ReceiveWithAuthorization.

    ``from``, ``to`` and ``value`` are not on the wire: they are the config's
    payer, the ERC-3009 collector and the deposit amount. ``salt`` is the
    uint256 that, with the channel id, makes the EIP-3009 nonce.
    """

    valid_after: int
    valid_before: int
    salt: int
    signature: bytes

    def to_wire(self) -> dict[str, str]:
        return {
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "salt": "0x" + self.salt.to_bytes(32, "big").hex(),
            "signature": _hex(self.signature),
        }


@dataclass(frozen=True, slots=True)
class DepositPayload:
    """``type: "deposit"``: open or top up a channel, and pay this request with a voucher."""

    config: ChannelConfig
    voucher: SignedVoucher
    amount: int
    authorization: Erc3009Deposit

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": PAYLOAD_DEPOSIT,
            "channelConfig": self.config.to_wire(),
            "voucher": _voucher_wire(self.voucher),
            "deposit": {
                "amount": str(self.amount),
                "authorization": {"erc3009Authorization": self.authorization.to_wire()},
            },
        }


@dataclass(frozen=True, slots=True)
class VoucherPayload:
    """``type: "voucher"``: pay this request with a new cumulative voucher."""

    config: ChannelConfig
    voucher: SignedVoucher

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": PAYLOAD_VOUCHER,
            "channelConfig": self.config.to_wire(),
            "voucher": _voucher_wire(self.voucher),
        }


@dataclass(frozen=True, slots=True)
class RefundPayload:
    """``type: "refund"``: a zero-charge voucher and, optionally, a partial refund amount.

    ``amount`` is ``None`` for a full refund.
    """

    config: ChannelConfig
    voucher: SignedVoucher
    amount: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": PAYLOAD_REFUND,
            "channelConfig": self.config.to_wire(),
            "voucher": _voucher_wire(self.voucher),
        }
        if self.amount is not None:
            out["amount"] = str(self.amount)
        return out


def _erc3009(value: object, where: str) -> Erc3009Deposit:
    data = _object(value, where)
    salt = _field(data, "salt", where=where)
    # The reference client sends a 0x bytes32; a decimal uint256 is the same number.
    salt_int = (
        int.from_bytes(_bytes32(salt, f"{where}.salt"), "big")
        if isinstance(salt, str) and salt.startswith("0x")
        else _amount(salt, f"{where}.salt", _UINT256_MAX)
    )
    return Erc3009Deposit(
        valid_after=_amount(
            _field(data, "validAfter", where=where), f"{where}.validAfter", _UINT256_MAX
        ),
        valid_before=_amount(
            _field(data, "validBefore", where=where), f"{where}.validBefore", _UINT256_MAX
        ),
        salt=salt_int,
        signature=_signature(_field(data, "signature", where=where), f"{where}.signature"),
    )


def _deposit(data: dict[str, Any]) -> DepositPayload:
    deposit = _object(_field(data, "deposit", where="payload"), "deposit")
    authorization = _object(_field(deposit, "authorization", where="deposit"), "authorization")
    erc3009 = authorization.get("erc3009Authorization")
    if "permit2Authorization" in authorization:
        if erc3009 is not None:
            raise _Malformed("deposit.authorization must carry exactly one authorization")
        # Our network table has no Permit2 collector yet: say so with the spec's words.
        raise _Malformed("permit2 deposits are not supported here")
    if erc3009 is None:
        raise _Malformed("deposit.authorization has no erc3009Authorization")
    amount = _amount(_field(deposit, "amount", where="deposit"), "deposit.amount")
    if amount == 0:
        raise _Malformed("deposit.amount must be positive")
    return DepositPayload(
        config=_config(_field(data, "channelConfig", where="payload"), "channelConfig"),
        voucher=_voucher(_field(data, "voucher", where="payload"), "voucher"),
        amount=amount,
        authorization=_erc3009(erc3009, "erc3009Authorization"),
    )


def parse_client_payload(
    value: object,
) -> DepositPayload | VoucherPayload | RefundPayload | WireRefusal:
    """Parse ``PaymentPayload.payload`` of a batch-settlement payment from a client."""
    if not isinstance(value, dict):
        return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "payload must be an object")
    kind = value.get("type")
    reasons = {
        PAYLOAD_DEPOSIT: ERR_DEPOSIT_PAYLOAD,
        PAYLOAD_VOUCHER: ERR_VOUCHER_PAYLOAD,
        PAYLOAD_REFUND: ERR_REFUND_PAYLOAD,
    }
    if not isinstance(kind, str) or kind not in reasons:
        return WireRefusal(
            ERR_INVALID_PAYLOAD_TYPE, "payload.type must be deposit, voucher or refund"
        )
    try:
        if kind == PAYLOAD_DEPOSIT:
            return _deposit(value)
        config = _config(_field(value, "channelConfig", where="payload"), "channelConfig")
        voucher = _voucher(_field(value, "voucher", where="payload"), "voucher")
        if kind == PAYLOAD_VOUCHER:
            return VoucherPayload(config, voucher)
        amount = value.get("amount")
        if amount is None:
            return RefundPayload(config, voucher)
        try:
            refund = _amount(amount, "amount")
        except _Malformed as exc:
            return WireRefusal(ERR_REFUND_AMOUNT_INVALID, str(exc))
        if refund == 0:
            return WireRefusal(ERR_REFUND_AMOUNT_INVALID, "amount must be positive")
        return RefundPayload(config, voucher, refund)
    except _Malformed as exc:
        return WireRefusal(reasons[kind], str(exc))


# ---------------------------------------------------------------- server → facilitator


@dataclass(frozen=True, slots=True)
class ClaimPayload:
    """``type: "claim"``: the latest vouchers to record on chain, in one batch.

    ``authorizer_signature`` is the receiver authorizer's ``ClaimBatch``
    signature when the server holds that key; without it the facilitator signs.
    """

    claims: tuple[VoucherClaim, ...]
    authorizer_signature: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": PAYLOAD_CLAIM,
            "claims": [
                {
                    "voucher": {
                        "channel": c.config.to_wire(),
                        "maxClaimableAmount": str(c.max_claimable_amount),
                    },
                    "signature": _hex(c.signature),
                    "totalClaimed": str(c.total_claimed),
                }
                for c in self.claims
            ],
        }
        if self.authorizer_signature is not None:
            out["claimAuthorizerSignature"] = _hex(self.authorizer_signature)
        return out


@dataclass(frozen=True, slots=True)
class SettlePayload:
    """``type: "settle"``: sweep a receiver's claimed total of one token to it."""

    receiver: str
    token: str

    def to_wire(self) -> dict[str, str]:
        return {"type": PAYLOAD_SETTLE, "receiver": self.receiver, "token": self.token}


def _claim_row(value: object, where: str) -> VoucherClaim:
    data = _object(value, where)
    voucher = _object(_field(data, "voucher", where=where), f"{where}.voucher")
    ceiling = _amount(
        _field(voucher, "maxClaimableAmount", where=f"{where}.voucher"),
        f"{where}.voucher.maxClaimableAmount",
    )
    total = _amount(_field(data, "totalClaimed", where=where), f"{where}.totalClaimed")
    if total > ceiling:
        raise _Malformed(f"{where}.totalClaimed is above the voucher's ceiling")
    return VoucherClaim(
        config=_config(_field(voucher, "channel", where=f"{where}.voucher"), f"{where}.channel"),
        max_claimable_amount=ceiling,
        signature=_signature(_field(data, "signature", where=where), f"{where}.signature"),
        total_claimed=total,
    )


def parse_claim_payload(value: object, *, claims_max: int = 1000) -> ClaimPayload | WireRefusal:
    """Parse a server's ``claim`` payload; at most ``claims_max`` rows."""
    try:
        data = _object(value, "payload")
        if data.get("type") != PAYLOAD_CLAIM:
            return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "payload.type must be claim")
        rows = _field(data, "claims", where="payload")
        if not isinstance(rows, list) or not 0 < len(rows) <= claims_max:
            raise _Malformed(f"claims must be a list of 1 to {claims_max} rows")
        signature = data.get("claimAuthorizerSignature")
        return ClaimPayload(
            tuple(_claim_row(row, f"claims[{i}]") for i, row in enumerate(rows)),
            None if signature is None else _signature(signature, "claimAuthorizerSignature"),
        )
    except _Malformed as exc:
        return WireRefusal(ERR_CLAIM_PAYLOAD, str(exc))


def parse_settle_payload(value: object) -> SettlePayload | WireRefusal:
    """Parse a server's ``settle`` payload."""
    try:
        data = _object(value, "payload")
        if data.get("type") != PAYLOAD_SETTLE:
            return WireRefusal(ERR_INVALID_PAYLOAD_TYPE, "payload.type must be settle")
        return SettlePayload(
            receiver=_address(_field(data, "receiver", where="payload"), "receiver"),
            token=_address(_field(data, "token", where="payload"), "token"),
        )
    except _Malformed as exc:
        return WireRefusal(ERR_SETTLE_PAYLOAD, str(exc))


# ---------------------------------------------------------------- extras


@dataclass(frozen=True, slots=True)
class ChannelStateWire:
    """``channelState``: the channel as the server sees it (chain mirror + charged so far)."""

    channel_id: bytes
    balance: int
    total_claimed: int
    withdraw_requested_at: int = 0
    refund_nonce: int = 0
    charged_cumulative_amount: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channelId": _hex(self.channel_id),
            "balance": str(self.balance),
            "totalClaimed": str(self.total_claimed),
            "withdrawRequestedAt": self.withdraw_requested_at,
            "refundNonce": str(self.refund_nonce),
        }
        if self.charged_cumulative_amount is not None:
            out["chargedCumulativeAmount"] = str(self.charged_cumulative_amount)
        return out


@dataclass(frozen=True, slots=True)
class VoucherStateWire:
    """``voucherState``: the last voucher the server holds, so a client can check and resync."""

    signed_max_claimable: int
    signature: bytes

    def to_wire(self) -> dict[str, str]:
        return {
            "signedMaxClaimable": str(self.signed_max_claimable),
            "signature": _hex(self.signature),
        }


def _channel_state(value: object, where: str) -> ChannelStateWire:
    data = _object(value, where)
    charged = data.get("chargedCumulativeAmount")
    nonce = data.get("refundNonce", "0")
    return ChannelStateWire(
        channel_id=_bytes32(_field(data, "channelId", where=where), f"{where}.channelId"),
        balance=_amount(_field(data, "balance", where=where), f"{where}.balance"),
        total_claimed=_amount(_field(data, "totalClaimed", where=where), f"{where}.totalClaimed"),
        withdraw_requested_at=_integer(
            data.get("withdrawRequestedAt", 0), f"{where}.withdrawRequestedAt", _UINT64_MAX
        ),
        refund_nonce=_amount(nonce, f"{where}.refundNonce", _UINT256_MAX),
        charged_cumulative_amount=(
            None if charged is None else _amount(charged, f"{where}.chargedCumulativeAmount")
        ),
    )


def _voucher_state(value: object, where: str) -> VoucherStateWire:
    data = _object(value, where)
    return VoucherStateWire(
        signed_max_claimable=_amount(
            _field(data, "signedMaxClaimable", where=where), f"{where}.signedMaxClaimable"
        ),
        signature=_signature(_field(data, "signature", where=where), f"{where}.signature"),
    )


@dataclass(frozen=True, slots=True)
class BatchExtra:
    """``PaymentRequirements.extra`` of a batch-settlement offer.

    ``channel_state`` and ``voucher_state`` appear only in a corrective 402.
    """

    receiver_authorizer: str
    withdraw_delay_s: int
    name: str
    version: str
    asset_transfer_method: str | None = None
    min_deposit: int | None = None
    channel_state: ChannelStateWire | None = None
    voucher_state: VoucherStateWire | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "receiverAuthorizer": self.receiver_authorizer,
            "withdrawDelay": self.withdraw_delay_s,
            "name": self.name,
            "version": self.version,
        }
        if self.asset_transfer_method is not None:
            out["assetTransferMethod"] = self.asset_transfer_method
        if self.min_deposit is not None:
            out["minDeposit"] = str(self.min_deposit)
        if self.channel_state is not None:
            out["channelState"] = self.channel_state.to_wire()
        if self.voucher_state is not None:
            out["voucherState"] = self.voucher_state.to_wire()
        return out


def parse_extra(value: object) -> BatchExtra | WireRefusal:
    """Parse an offer's ``extra`` (a client reading a 402, or the server checking ``accepted``)."""
    try:
        data = _object(value, "extra")
        name, version = data.get("name"), data.get("version")
        if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
            return WireRefusal(
                ERR_MISSING_EIP712_DOMAIN, "extra needs the token's name and version"
            )
        delay = _integer(
            _field(data, "withdrawDelay", where="extra"), "extra.withdrawDelay", 2**40 - 1
        )
        if not WITHDRAW_DELAY_MIN_S <= delay <= WITHDRAW_DELAY_MAX_S:
            return WireRefusal(
                ERR_WITHDRAW_DELAY_OUT_OF_RANGE, "extra.withdrawDelay is out of range"
            )
        method = data.get("assetTransferMethod")
        if method is not None and method not in ASSET_TRANSFER_METHODS:
            raise _Malformed("extra.assetTransferMethod must be eip3009 or permit2")
        min_deposit = data.get("minDeposit")
        state, voucher = data.get("channelState"), data.get("voucherState")
        return BatchExtra(
            receiver_authorizer=_address(
                _field(data, "receiverAuthorizer", where="extra"), "extra.receiverAuthorizer"
            ),
            withdraw_delay_s=delay,
            name=name,
            version=version,
            asset_transfer_method=method,
            min_deposit=None if min_deposit is None else _amount(min_deposit, "extra.minDeposit"),
            channel_state=None if state is None else _channel_state(state, "extra.channelState"),
            voucher_state=None
            if voucher is None
            else _voucher_state(voucher, "extra.voucherState"),
        )
    except _Malformed as exc:
        return WireRefusal(ERR_INVALID_SCHEME, str(exc))


@dataclass(frozen=True, slots=True)
class PaymentResponseExtra:
    """``PAYMENT-RESPONSE``'s ``extra``: what this request cost and the channel after it.

    ``charged_amount`` is ``None`` on a refund response, as the spec says.
    """

    charged_amount: int | None = None
    channel_state: ChannelStateWire | None = None
    voucher_state: VoucherStateWire | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.charged_amount is not None:
            out["chargedAmount"] = str(self.charged_amount)
        if self.channel_state is not None:
            out["channelState"] = self.channel_state.to_wire()
        if self.voucher_state is not None:
            out["voucherState"] = self.voucher_state.to_wire()
        return out


def parse_response_extra(value: object) -> PaymentResponseExtra | WireRefusal:
    """Parse a settle response's ``extra`` (the paying client's side)."""
    try:
        data = _object(value, "extra")
        charged, state, voucher = (
            data.get("chargedAmount"),
            data.get("channelState"),
            data.get("voucherState"),
        )
        return PaymentResponseExtra(
            charged_amount=None if charged is None else _amount(charged, "extra.chargedAmount"),
            channel_state=None if state is None else _channel_state(state, "extra.channelState"),
            voucher_state=None
            if voucher is None
            else _voucher_state(voucher, "extra.voucherState"),
        )
    except _Malformed as exc:
        return WireRefusal(ERR_INVALID_SCHEME, str(exc))
