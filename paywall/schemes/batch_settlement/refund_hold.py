"""A cooperative refund in flight holds its amount out of the channel's spendable balance.

From the moment the paywall signs a ``Refund`` until the chain shows it
landed, the chain mirror still holds the balance from before it. A voucher
charged in that window against the old balance could be above what the
escrow holds once the refund lands, and would never be paid (issue 17,
finding 3). So the refund is **held** on the channel row first:

- :func:`hold_refund` writes ``refunding`` under the row's lock, and only if
  nothing was charged since the refund's voucher was checked (its ceiling
  must still be ``charged``) and the refund nonce it signs is still the
  row's. Every voucher decision subtracts ``refunding`` from the balance
  (``ChannelRecord.spendable``), and the hot path's compare-and-swap names
  ``refunding``, so a voucher decided before the hold is decided again.
- the hold ends when a chain snapshot shows the refund nonce moved (the
  refund, or another one, landed: the balance read is after it), or with
  :func:`release_refund` when the facilitator says the refund failed.

A process that dies with a refund in flight leaves the hold: it only keeps
the payer's own remainder out of new vouchers until the refund lands or the
payer asks for it again (a new hold at the same nonce takes the larger
amount). It never lets an unpaid request through.
"""

from __future__ import annotations

from sqlalchemy import update

from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.schemes.batch_settlement.state import (
    CHANNELS,
    ChannelRecord,
    ChannelStore,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.state.record import NO_DEPOSIT
from farthing.paywall.schemes.batch_settlement.vouchers import UINT128_MAX
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
)

__all__ = ["hold_refund", "release_refund"]


def hold_refund(
    store: ChannelStore, record: ChannelRecord, amount: int
) -> ChannelRecord | ChargeRefused:
    """Hold ``amount`` for a refund checked against ``record``; the row after, or a refusal."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= UINT128_MAX:
        raise PaywallConfigError("a refund holds a positive uint128 of atomic units")
    key = store._key(record.channel_id)
    with store._begin() as connection:
        current = store._locked(connection, record.channel_id)
        if current is None:
            return NO_DEPOSIT
        if current.charged != record.charged:
            return ChargeRefused(
                ERR_CUMULATIVE_AMOUNT_MISMATCH,
                "a voucher was charged since the refund's voucher was checked",
                current,
            )
        if current.refund_nonce != record.refund_nonce:
            return ChargeRefused(ERR_CHANNEL_BUSY, "another refund landed meanwhile; ask again")
        held = max(current.refunding, amount)
        connection.execute(
            update(CHANNELS).where(CHANNELS.c.channel_id == key).values(refunding=str(held))
        )
        after = store._locked(connection, record.channel_id)
    assert after is not None  # the row was locked above
    return after


def release_refund(store: ChannelStore, channel_id: bytes, refund_nonce: int) -> None:
    """End the hold of a refund signed at ``refund_nonce`` that did not land."""
    with store._begin() as connection:
        connection.execute(
            update(CHANNELS)
            .where(CHANNELS.c.channel_id == store._key(channel_id))
            .where(CHANNELS.c.refund_nonce == str(refund_nonce))
            .values(refunding="0")
        )
