"""What the server knows of one channel, and what a charge answers: values, no database.

:class:`ChannelRecord` is one ``paywall_channel`` row as read (and checked
again after storage, :func:`~farthing.paywall.schemes.batch_settlement.state.table.record_from_row`);
:class:`ChannelTerms` is what an offer fixes in every channel that pays it.
A charge answers :class:`ChargeAccepted` or :class:`ChargeRefused` (the
spec's code, and the state a corrective 402 sends back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from farthing.paywall.schemes.batch_settlement.extras import ChannelStateWire, VoucherStateWire
from farthing.paywall.schemes.batch_settlement.holds import Hold
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_NOT_FOUND,
    ERR_RECEIVER_AUTHORIZER_MISMATCH,
    ERR_RECEIVER_MISMATCH,
    ERR_TOKEN_MISMATCH,
    ERR_WITHDRAW_DELAY_MISMATCH,
)
from farthing.wallet.address import checksum

__all__ = ["NO_DEPOSIT", "ChannelRecord", "ChannelTerms", "ChargeAccepted", "ChargeRefused"]


def _live_held(record: ChannelRecord) -> int:
    """What the row holds for requests still being answered (lapsed holds count nothing)."""
    return record.held if record.held_until_ns > time.time_ns() else 0


@dataclass(frozen=True, slots=True)
class ChannelTerms:
    """What an offer fixes in every channel that pays it: the ``payTo``, ``asset`` and ``extra``."""

    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay_s: int

    def __post_init__(self) -> None:
        for name in ("receiver", "receiver_authorizer", "token"):
            object.__setattr__(self, name, checksum(getattr(self, name)))

    def refusal(self, config: ChannelConfig) -> str | None:
        """The spec's code for a config that does not belong to this offer, or ``None``."""
        if config.receiver != self.receiver:
            return ERR_RECEIVER_MISMATCH
        if config.receiver_authorizer != self.receiver_authorizer:
            return ERR_RECEIVER_AUTHORIZER_MISMATCH
        if config.token != self.token:
            return ERR_TOKEN_MISMATCH
        if config.withdraw_delay_s != self.withdraw_delay_s:
            return ERR_WITHDRAW_DELAY_MISMATCH
        return None


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """One channel as the server knows it."""

    channel_id: bytes
    network: str
    config: ChannelConfig
    balance: int
    total_claimed: int
    withdraw_requested_at: int
    refund_nonce: int
    onchain_synced_at_ns: int
    charged: int
    signed_max: int
    signature: bytes | None
    last_request_at_ns: int | None
    held: int = 0  # held by requests still being answered (channel_holds)
    held_until_ns: int = 0  # when the latest of those holds lapses
    hold_epoch: int = 0  # bumped whenever lapsed holds are dropped
    withdraw_amount: int = 0  # what the pending timed withdrawal takes out (0: none)
    refunding: int = 0  # what a cooperative refund in flight returns (0: none)

    @property
    def unclaimed(self) -> int:
        """Earned here but not yet claimed on chain: the receivable."""
        return self.charged - self.total_claimed

    @property
    def spendable(self) -> int:
        """The highest cumulative voucher that stays claimable whatever the payer does next.

        A pending timed withdrawal may finalize, and a refund in flight may
        land, before our next claim does; either takes its amount out of the
        balance. A voucher up to ``balance - withdrawal - refund`` is still
        covered afterwards (``finalizeWithdraw`` pays out at most its amount),
        so it can be claimed whenever the claim lands.
        """
        withdrawing = self.withdraw_amount if self.withdraw_requested_at > 0 else 0
        return max(0, self.balance - withdrawing - self.refunding)

    def channel_state(self) -> ChannelStateWire:
        """``channelState`` for a PAYMENT-RESPONSE or a corrective 402."""
        return ChannelStateWire(
            channel_id=self.channel_id,
            balance=self.balance,
            total_claimed=self.total_claimed,
            withdraw_requested_at=self.withdraw_requested_at,
            refund_nonce=self.refund_nonce,
            # What the next voucher builds on: final charges and live holds.
            charged_cumulative_amount=self.charged + _live_held(self),
        )

    def voucher_state(self) -> VoucherStateWire | None:
        """``voucherState``: the payer's last voucher, for the client to check before resyncing."""
        if self.signature is None:
            return None
        return VoucherStateWire(self.signed_max, self.signature)


@dataclass(frozen=True, slots=True)
class ChargeAccepted:
    """The voucher was good and ``charged_amount`` is recorded; ``record`` is the state after."""

    record: ChannelRecord
    charged_amount: int
    hold: Hold | None = None  # the lease, when the charge is held (charge(hold_s=...))


@dataclass(frozen=True, slots=True)
class ChargeRefused:
    """Nothing was recorded. ``reason`` is the spec's code; ``record`` (when known) is the
    server's state, which a cumulative-amount refusal sends back as the corrective 402."""

    reason: str
    detail: str
    record: ChannelRecord | None = None


# A charge or refund on a channel the server has no row for (and the chain no deposit).
NO_DEPOSIT: Final = ChargeRefused(ERR_CHANNEL_NOT_FOUND, "no deposit is known for this channel")
