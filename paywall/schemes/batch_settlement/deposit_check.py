"""A deposit's voucher, judged before the deposit is sent: nothing reaches the relayer for a refusal.

A ``deposit`` payload is settled on chain by the merchant's relayer (its gas)
and only then is its voucher charged. Every check that does not need the
chain's post-deposit state runs first: the config and the signature
(:meth:`ChannelStore.check_voucher`), the deposit against the voucher (the
facilitator's ``verify``), and here the voucher's cumulative amount against
the price and the channel's charged total as the server knows it. A stranger
who deposits one unit with a voucher that can never be taken gets the same
corrective 402 as before, but no transaction is sent.

What the deposit changes (the balance) is left to the charge after it; what
it cannot change is judged here:

- the channel has a row: its live ``charged + held`` (lapsed holds dropped),
  exactly as :meth:`ChannelStore.charge` will see it, so a copy of a voucher
  still being answered is ``channel_busy`` and any other amount than
  ``charged + held + price`` is ``cumulative_amount_mismatch``;
- no row (a new channel, or state lost): the chain's ``totalClaimed``, where
  the row the deposit creates starts (a read, no transaction).

A race may still refuse a voucher after its deposit (a hold freed meanwhile):
the deposit then stays in escrow, the payer's, refundable, as before.
"""

from __future__ import annotations

import time

from farthing.paywall.schemes.batch_settlement.holds import live_view
from farthing.paywall.schemes.batch_settlement.state import (
    ChannelRecord,
    ChannelStore,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, SignedVoucher
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CHANNEL_STATE_READ_FAILED,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
)
from farthing.wallet.errors import WalletError

__all__ = ["deposit_refusal"]


def deposit_refusal(
    store: ChannelStore, config: ChannelConfig, voucher: SignedVoucher, price: int
) -> ChargeRefused | None:
    """Why a deposit's ``voucher`` would be refused whatever the deposit adds; ``None`` if not.

    ``config`` must already have passed :meth:`ChannelStore.check_voucher`
    (it hashes to the voucher's channel id). Blocking (a row read, maybe a
    chain read): run it in a worker thread.
    """
    known = store.get(voucher.channel_id)
    if known is None:
        fresh = _from_chain(store, config, voucher.channel_id)
        if isinstance(fresh, ChargeRefused) or fresh is None:
            return fresh
        known = fresh
    view = live_view(known, time.time_ns())
    ceiling = voucher.max_claimable_amount
    if view.held > 0 and view.charged < ceiling <= view.charged + view.held:
        return ChargeRefused(
            ERR_CHANNEL_BUSY, "this voucher's request is still being answered", view
        )
    if ceiling != view.charged + view.held + price:
        return ChargeRefused(
            ERR_CUMULATIVE_AMOUNT_MISMATCH,
            "maxClaimableAmount must be chargedCumulativeAmount + amount; nothing was deposited",
            view,
        )
    return None


def _from_chain(
    store: ChannelStore, config: ChannelConfig, channel_id: bytes
) -> ChannelRecord | ChargeRefused | None:
    """The row a deposit would create, from the chain as it is now (nothing is written)."""
    escrow = store.escrow
    if escrow is None:
        return None  # no chain to read: the charge after the deposit judges it
    try:
        snapshot = escrow.snapshot(channel_id)
    except WalletError:
        return ChargeRefused(ERR_CHANNEL_STATE_READ_FAILED, "the escrow could not be read")
    return ChannelRecord(
        channel_id=channel_id,
        network=store.network,
        config=config,
        balance=snapshot.balance,
        total_claimed=snapshot.total_claimed,
        withdraw_requested_at=snapshot.withdraw_requested_at,
        refund_nonce=snapshot.refund_nonce,
        onchain_synced_at_ns=time.time_ns(),
        charged=snapshot.total_claimed,
        signed_max=snapshot.total_claimed,
        signature=None,
        last_request_at_ns=None,
        withdraw_amount=snapshot.withdraw_amount if snapshot.withdraw_requested_at else 0,
    )
