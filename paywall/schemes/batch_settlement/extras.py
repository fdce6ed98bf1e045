"""The x402 ``batch-settlement`` extras: the offer's ``extra`` and ``PAYMENT-RESPONSE``'s ``extra``.

:class:`BatchExtra` is ``PaymentRequirements.extra`` of an offer, with the
corrective ``channelState`` (:class:`ChannelStateWire`) and ``voucherState``
(:class:`VoucherStateWire`) of a 402 that resyncs a client;
:class:`PaymentResponseExtra` is what a request cost and the channel after it.
Parsing is strict as in ``wire``; a refusal is a ``WireRefusal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from farthing.paywall.schemes.batch_settlement.vouchers import (
    WITHDRAW_DELAY_MAX_S,
    WITHDRAW_DELAY_MIN_S,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    ASSET_TRANSFER_METHODS,
    ERR_INVALID_SCHEME,
    ERR_MISSING_EIP712_DOMAIN,
    ERR_WITHDRAW_DELAY_OUT_OF_RANGE,
    parse_amount,
)
from farthing.paywall.schemes.fields import (
    Malformed,
    WireRefusal,
    address,
    bytes32,
    integer,
    need,
    object_of,
    signature,
    to_hex,
)
from farthing.wallet.money import UINT256_MAX

__all__ = [
    "BatchExtra",
    "ChannelStateWire",
    "PaymentResponseExtra",
    "VoucherStateWire",
    "parse_extra",
    "parse_response_extra",
]

_UINT64_MAX: Final = 2**64 - 1


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
            "channelId": to_hex(self.channel_id),
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
            "signature": to_hex(self.signature),
        }


def _channel_state(value: object, where: str) -> ChannelStateWire:
    data = object_of(value, where)
    charged = data.get("chargedCumulativeAmount")
    nonce = data.get("refundNonce", "0")
    return ChannelStateWire(
        channel_id=bytes32(need(data, "channelId", where), f"{where}.channelId"),
        balance=parse_amount(need(data, "balance", where), f"{where}.balance"),
        total_claimed=parse_amount(need(data, "totalClaimed", where), f"{where}.totalClaimed"),
        withdraw_requested_at=integer(
            data.get("withdrawRequestedAt", 0), f"{where}.withdrawRequestedAt", _UINT64_MAX
        ),
        refund_nonce=parse_amount(nonce, f"{where}.refundNonce", UINT256_MAX),
        charged_cumulative_amount=(
            None if charged is None else parse_amount(charged, f"{where}.chargedCumulativeAmount")
        ),
    )


def _voucher_state(value: object, where: str) -> VoucherStateWire:
    data = object_of(value, where)
    return VoucherStateWire(
        signed_max_claimable=parse_amount(
            need(data, "signedMaxClaimable", where), f"{where}.signedMaxClaimable"
        ),
        signature=signature(need(data, "signature", where), f"{where}.signature"),
    )


def _with_states(
    out: dict[str, Any],
    channel_state: ChannelStateWire | None,
    voucher_state: VoucherStateWire | None,
) -> dict[str, Any]:
    """``out`` with ``channelState`` and ``voucherState`` added where there are any."""
    if channel_state is not None:
        out["channelState"] = channel_state.to_wire()
    if voucher_state is not None:
        out["voucherState"] = voucher_state.to_wire()
    return out


def _states(data: dict[str, Any]) -> tuple[ChannelStateWire | None, VoucherStateWire | None]:
    """An ``extra``'s optional ``channelState`` and ``voucherState``, parsed in that order."""
    state, voucher = data.get("channelState"), data.get("voucherState")
    return (
        None if state is None else _channel_state(state, "extra.channelState"),
        None if voucher is None else _voucher_state(voucher, "extra.voucherState"),
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
        return _with_states(out, self.channel_state, self.voucher_state)


def parse_extra(value: object) -> BatchExtra | WireRefusal:
    """Parse an offer's ``extra`` (a client reading a 402, or the server checking ``accepted``)."""
    try:
        data = object_of(value, "extra")
        name, version = data.get("name"), data.get("version")
        if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
            return WireRefusal(
                ERR_MISSING_EIP712_DOMAIN, "extra needs the token's name and version"
            )
        delay = integer(need(data, "withdrawDelay", "extra"), "extra.withdrawDelay", 2**40 - 1)
        if not WITHDRAW_DELAY_MIN_S <= delay <= WITHDRAW_DELAY_MAX_S:
            return WireRefusal(
                ERR_WITHDRAW_DELAY_OUT_OF_RANGE, "extra.withdrawDelay is out of range"
            )
        method = data.get("assetTransferMethod")
        if method is not None and method not in ASSET_TRANSFER_METHODS:
            raise Malformed("extra.assetTransferMethod must be eip3009 or permit2")
        receiver_authorizer = address(
            need(data, "receiverAuthorizer", "extra"), "extra.receiverAuthorizer"
        )
        deposit = data.get("minDeposit")
        min_deposit = None if deposit is None else parse_amount(deposit, "extra.minDeposit")
        channel_state, voucher_state = _states(data)
        return BatchExtra(
            receiver_authorizer=receiver_authorizer,
            withdraw_delay_s=delay,
            name=name,
            version=version,
            asset_transfer_method=method,
            min_deposit=min_deposit,
            channel_state=channel_state,
            voucher_state=voucher_state,
        )
    except Malformed as exc:
        return WireRefusal(ERR_INVALID_SCHEME, exc.detail)


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
        return _with_states(out, self.channel_state, self.voucher_state)


def parse_response_extra(value: object) -> PaymentResponseExtra | WireRefusal:
    """Parse a settle response's ``extra`` (the paying client's side)."""
    try:
        data = object_of(value, "extra")
        charged = data.get("chargedAmount")
        charged_amount = None if charged is None else parse_amount(charged, "extra.chargedAmount")
        channel_state, voucher_state = _states(data)
        return PaymentResponseExtra(charged_amount, channel_state, voucher_state)
    except Malformed as exc:
        return WireRefusal(ERR_INVALID_SCHEME, exc.detail)
