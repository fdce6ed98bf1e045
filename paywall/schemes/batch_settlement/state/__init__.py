"""Per-channel server state for x402 ``batch-settlement``, in the payment database.

One row per channel (table ``paywall_channel``, :mod:`.table`), on SQLite or
PostgreSQL: the channel's config, a mirror of the chain, and what the server
has earned (``charged``, the spec's ``chargedCumulativeAmount``, and the
payer's highest voucher: the one to claim). :class:`ChannelStore` is the one
door to it:

- :mod:`.record`: :class:`ChannelRecord` (a row as the server knows it),
  :class:`ChannelTerms` (what an offer fixes), and a charge's outcome,
  :class:`ChargeAccepted` or :class:`ChargeRefused` (the spec's code; a
  cumulative-amount refusal carries the record, so the middleware can answer
  the corrective 402 with ``channelState`` + ``voucherState``);
- :mod:`.database`: the connections, the row reads and the compare-and-swap
  writes (:mod:`.swap` drives them from a thread or the event loop);
- :mod:`.mirror`: the chain's side: a snapshot mirrored, and
  :meth:`ChannelStore.recover` rebuilding lost state from the chain;
- :mod:`.checks`: what a voucher must pass, with no row and against it;
- :mod:`.charge`: the paid path, :meth:`ChannelStore.charge` (and
  ``charge_async``, the same parameters, :class:`ChargeRequest`), and a held
  charge made final;
- :mod:`.store`: :class:`ChannelStore`, the operations over all of these.

Charges are leases (:mod:`farthing.paywall.schemes.batch_settlement.holds`):
the paywall charges with ``hold_s``, which **holds** the ceiling instead of
adding it to ``charged``; once the answer is sent,
:meth:`ChannelStore.update_hold` makes it final (or frees it when the handler
failed). A hold whose process died lapses at its deadline and the next
charge drops it. The next voucher builds on ``charged + held``.
"""

from farthing.paywall.schemes.batch_settlement.state.charge import ChargeRequest
from farthing.paywall.schemes.batch_settlement.state.database import STATE_TTL_S_DEFAULT
from farthing.paywall.schemes.batch_settlement.state.record import (
    ChannelRecord,
    ChannelTerms,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.state.store import ChannelStore
from farthing.paywall.schemes.batch_settlement.state.table import CHANNELS

__all__ = [
    "CHANNELS",
    "STATE_TTL_S_DEFAULT",
    "ChannelRecord",
    "ChannelStore",
    "ChannelTerms",
    "ChargeAccepted",
    "ChargeRefused",
    "ChargeRequest",
]
