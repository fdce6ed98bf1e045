"""A channel payment ready to send: the reserved charge (and deposit), the signed voucher, the header.

:meth:`ChannelPayer.prepare <farthing.agents.channels.payer.ChannelPayer.prepare>`
makes it before anything is sent; the paying client sends its header, and
:meth:`~farthing.agents.channels.payer.ChannelPayer.finish` books the seller's
answer against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from farthing.agents.channels.store import Lease
from farthing.agents.outcome import OutcomeStatus, PaymentOutcome
from farthing.paywall.schemes.batch_settlement.vouchers import SignedVoucher
from farthing.wallet.money import Asset

if TYPE_CHECKING:
    from farthing.agents.challenge import Offer
    from farthing.agents.payer import Intent

__all__ = ["ChannelPrepared"]


@dataclass(frozen=True, slots=True)
class ChannelPrepared:
    """A reserved charge (and maybe a deposit) with its signed voucher, ready to send."""

    url: str
    offer: Offer
    intent: Intent
    payment_id: int
    lease: Lease
    voucher: SignedVoucher
    ceiling: int
    charged_before: int
    balance_before: int
    header: tuple[str, str]
    asset: Asset
    deposit_id: int | None = None
    deposit_amount: int = 0
    approval_id: int | None = None

    @property
    def channel_id(self) -> str:
        return self.lease.channel_id

    def outcome(
        self,
        status: OutcomeStatus,
        reason: str | None = None,
        *,
        message: str | None = None,
        tx_hash: str | None = None,
        amount: int | None = None,
    ) -> PaymentOutcome:
        return PaymentOutcome(
            status=status,
            url=self.url,
            reason=reason,
            message=message,
            amount=self.ceiling if amount is None else amount,
            asset=self.asset,
            pay_to=self.offer.requirements.pay_to,
            payment_id=self.payment_id,
            tx_hash=tx_hash,
            task_id=self.intent.task_id,
            purpose=self.intent.purpose,
            approval_id=self.approval_id,
        )
