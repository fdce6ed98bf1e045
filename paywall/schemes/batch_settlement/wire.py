"""The x402 ``batch-settlement`` wire: error codes, channel configs and vouchers, client payloads.

Every shape here is the spec's camelCase JSON (``specs/schemes/batch-settlement/
scheme_batch_settlement_evm.md`` in x402-foundation/x402). Parsing is strict,
with the helpers every scheme shares (:mod:`farthing.paywall.schemes.fields`):

- amounts are decimal strings of a ``uint128`` (``"1000"``), never numbers or
  floats, and become ``int`` (:func:`parse_amount`);
- ``withdrawDelay`` and ``withdrawRequestedAt`` are JSON integers (the spec's
  ``number``), never booleans;
- addresses come back checksummed, ``bytes32`` and signatures as ``bytes``.

Malformed input is a :class:`~farthing.paywall.schemes.fields.WireRefusal`
value carrying the spec's error code as its ``reason``
(``invalid_batch_settlement_evm_voucher_payload``, …) and a short ``detail``
that never echoes the input; nothing here raises on what a client sends.
``to_wire()`` gives the JSON back, so ``parse(x.to_wire()) == x``. The
server's claim and settle payloads are ``redeem``; the requirements' and the
response's ``extra`` are ``extras``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from farthing.paywall.schemes.batch_settlement.vouchers import (
    UINT128_MAX,
    ChannelConfig,
    SignedVoucher,
)
from farthing.paywall.schemes.fields import (
    Malformed,
    WireRefusal,
    address,
    amount,
    bytes32,
    integer,
    need,
    object_of,
    signature,
    to_hex,
)
from farthing.wallet.errors import WalletError
from farthing.wallet.money import UINT256_MAX

__all__ = [
    "ASSET_TRANSFER_METHODS",
    "CODE_PREFIX",
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
    "DepositPayload",
    "Erc3009Deposit",
    "RefundPayload",
    "VoucherPayload",
    "parse_amount",
    "parse_client_payload",
    "parse_config",
]

SCHEME: Final = "batch-settlement"

PAYLOAD_DEPOSIT: Final = "deposit"
PAYLOAD_VOUCHER: Final = "voucher"
PAYLOAD_REFUND: Final = "refund"
PAYLOAD_CLAIM: Final = "claim"
PAYLOAD_SETTLE: Final = "settle"

ASSET_TRANSFER_METHODS: Final = frozenset({"eip3009", "permit2"})

# The spec's error codes: part of the wire, so spelled exactly as the spec does.
CODE_PREFIX: Final = "invalid_batch_settlement_evm_"  # every code of this scheme
ERR_INVALID_SCHEME: Final = CODE_PREFIX + "scheme"
ERR_NETWORK_MISMATCH: Final = CODE_PREFIX + "network_mismatch"
ERR_MISSING_EIP712_DOMAIN: Final = CODE_PREFIX + "missing_eip712_domain"
ERR_INVALID_PAYLOAD_TYPE: Final = CODE_PREFIX + "payload_type"
ERR_CHANNEL_NOT_FOUND: Final = CODE_PREFIX + "channel_not_found"
ERR_CHANNEL_ID_MISMATCH: Final = CODE_PREFIX + "channel_id_mismatch"
ERR_CHANNEL_STATE_READ_FAILED: Final = CODE_PREFIX + "channel_state_read_failed"
ERR_RECEIVER_MISMATCH: Final = CODE_PREFIX + "receiver_mismatch"
ERR_RECEIVER_AUTHORIZER_MISMATCH: Final = CODE_PREFIX + "receiver_authorizer_mismatch"
ERR_AUTHORIZER_NOT_CONFIGURED: Final = CODE_PREFIX + "authorizer_not_configured"
ERR_TOKEN_MISMATCH: Final = CODE_PREFIX + "token_mismatch"
ERR_WITHDRAW_DELAY_MISMATCH: Final = CODE_PREFIX + "withdraw_delay_mismatch"
ERR_WITHDRAW_DELAY_OUT_OF_RANGE: Final = CODE_PREFIX + "withdraw_delay_out_of_range"
ERR_INVALID_VOUCHER_SIGNATURE: Final = CODE_PREFIX + "voucher_signature"
ERR_CUMULATIVE_EXCEEDS_BALANCE: Final = CODE_PREFIX + "cumulative_exceeds_balance"
ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED: Final = CODE_PREFIX + "cumulative_below_claimed"
ERR_CUMULATIVE_AMOUNT_MISMATCH: Final = CODE_PREFIX + "cumulative_amount_mismatch"
ERR_DEPOSIT_PAYLOAD: Final = CODE_PREFIX + "deposit_payload"
ERR_VOUCHER_PAYLOAD: Final = CODE_PREFIX + "voucher_payload"
ERR_REFUND_PAYLOAD: Final = CODE_PREFIX + "refund_payload"
ERR_REFUND_AMOUNT_INVALID: Final = CODE_PREFIX + "refund_amount_invalid"
ERR_CLAIM_PAYLOAD: Final = CODE_PREFIX + "claim_payload"
ERR_SETTLE_PAYLOAD: Final = CODE_PREFIX + "settle_payload"
ERR_PERMIT2_AUTHORIZATION_REQUIRED: Final = CODE_PREFIX + "permit2_authorization_required"
ERR_CHANNEL_BUSY: Final = CODE_PREFIX + "channel_busy"
ERR_INVALID_CHANNEL_ID: Final = CODE_PREFIX + "channel_id_invalid"
ERR_VERIFICATION_STATE_UNAVAILABLE: Final = CODE_PREFIX + "verification_state_unavailable"
ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE: Final = CODE_PREFIX + "charge_exceeds_signed_cumulative"

_AMOUNT_DIGITS_MAX: Final = 39  # a uint128 has 39 decimal digits


def parse_amount(value: object, where: str, maximum: int = UINT128_MAX) -> int:
    """An amount of this scheme: a decimal string of at most a ``uint128``'s 39 digits, ≤ ``maximum``."""
    return amount(value, where, maximum, digits_max=_AMOUNT_DIGITS_MAX)


_CONFIG_FIELDS: Final = (
    "payer",
    "payerAuthorizer",
    "receiver",
    "receiverAuthorizer",
    "token",
    "withdrawDelay",
    "salt",
)


def parse_config(value: object, where: str) -> ChannelConfig:
    """A ``channelConfig`` object (or a claim's ``voucher.channel``)."""
    data = object_of(value, where)
    raw = tuple(need(data, name, where) for name in _CONFIG_FIELDS)
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
            payer=address(payer, f"{where}.payer"),
            payer_authorizer=address(payer_authorizer, f"{where}.payerAuthorizer"),
            receiver=address(receiver, f"{where}.receiver"),
            receiver_authorizer=address(receiver_authorizer, f"{where}.receiverAuthorizer"),
            token=address(token, f"{where}.token"),
            withdraw_delay_s=integer(delay, f"{where}.withdrawDelay", 2**40 - 1),
            salt=bytes32(salt, f"{where}.salt"),
        )
    except WalletError:  # pragma: no cover - every field was checked above
        raise Malformed(f"{where} is not a channel config") from None


def _voucher(value: object, where: str) -> SignedVoucher:
    data = object_of(value, where)
    return SignedVoucher(
        channel_id=bytes32(need(data, "channelId", where), f"{where}.channelId"),
        max_claimable_amount=parse_amount(
            need(data, "maxClaimableAmount", where), f"{where}.maxClaimableAmount"
        ),
        signature=signature(need(data, "signature", where), f"{where}.signature"),
    )


def _voucher_wire(voucher: SignedVoucher) -> dict[str, str]:
    return {
        "channelId": to_hex(voucher.channel_id),
        "maxClaimableAmount": str(voucher.max_claimable_amount),
        "signature": to_hex(voucher.signature),
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
            "signature": to_hex(self.signature),
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
    data = object_of(value, where)
    salt = need(data, "salt", where)
    # The reference client sends a 0x bytes32; a decimal uint256 is the same number.
    salt_int = (
        int.from_bytes(bytes32(salt, f"{where}.salt"), "big")
        if isinstance(salt, str) and salt.startswith("0x")
        else parse_amount(salt, f"{where}.salt", UINT256_MAX)
    )
    return Erc3009Deposit(
        valid_after=parse_amount(
            need(data, "validAfter", where), f"{where}.validAfter", UINT256_MAX
        ),
        valid_before=parse_amount(
            need(data, "validBefore", where), f"{where}.validBefore", UINT256_MAX
        ),
        salt=salt_int,
        signature=signature(need(data, "signature", where), f"{where}.signature"),
    )


def _deposit(data: dict[str, Any]) -> DepositPayload:
    deposit = object_of(need(data, "deposit", "payload"), "deposit")
    authorization = object_of(need(deposit, "authorization", "deposit"), "authorization")
    erc3009 = authorization.get("erc3009Authorization")
    if "permit2Authorization" in authorization:
        if erc3009 is not None:
            raise Malformed("deposit.authorization must carry exactly one authorization")
        # Our network table has no Permit2 collector yet: say so with the spec's words.
        raise Malformed("permit2 deposits are not supported here")
    if erc3009 is None:
        raise Malformed("deposit.authorization has no erc3009Authorization")
    amount = parse_amount(need(deposit, "amount", "deposit"), "deposit.amount")
    if amount == 0:
        raise Malformed("deposit.amount must be positive")
    return DepositPayload(
        config=parse_config(need(data, "channelConfig", "payload"), "channelConfig"),
        voucher=_voucher(need(data, "voucher", "payload"), "voucher"),
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
        config = parse_config(need(value, "channelConfig", "payload"), "channelConfig")
        voucher = _voucher(need(value, "voucher", "payload"), "voucher")
        if kind == PAYLOAD_VOUCHER:
            return VoucherPayload(config, voucher)
        amount = value.get("amount")
        if amount is None:
            return RefundPayload(config, voucher)
        try:
            refund = parse_amount(amount, "amount")
        except Malformed as exc:
            return WireRefusal(ERR_REFUND_AMOUNT_INVALID, exc.detail)
        if refund == 0:
            return WireRefusal(ERR_REFUND_AMOUNT_INVALID, "amount must be positive")
        return RefundPayload(config, voucher, refund)
    except Malformed as exc:
        return WireRefusal(reasons[kind], exc.detail)
