"""A streamed answer paid through a channel: the ceiling held, what was sent made final as it goes.

:class:`ChannelMeter` is ``batch-settlement``'s :class:`~farthing.paywall.schemes.metering.Meter`.
``ChannelPaywall.handle(..., metered=...)`` takes the voucher and holds its
ceiling exactly as for a buffered answer (so a replayed or concurrent copy
never reaches the handler); then, instead of buffering, the edge runs the
handler with this meter in its scope (``farthing.paywall.edge.metered``):

- **progress**: the handler reports the charge for what it has sent so far;
  every ``checkpoint_s`` the meter moves the part not yet final out of the
  hold into ``charged`` (one compare-and-swap, the rest kept held) and
  renews the row's lease while the stream lasts (``until_ns``). A process
  killed mid-stream (SIGKILL) has made final everything sent up to its last
  checkpoint; the rest of the hold lapses, and the payer's retry of the same
  voucher gets the corrective 402 with that state: charged once, never twice;
- **finish**: the real charge (the handler's, from the upstream's usage),
  capped at the ceiling and at least what is already final, is made final
  and the rest of the hold freed; it is booked as earned, and the
  ``PAYMENT-RESPONSE`` (``extra.chargedAmount``, ``extra.channelState``) is
  returned for the handler to send;
- **close**: a handler that ended without finishing (it failed, or the
  client left) is charged what it last reported sent, zero for a non-2xx
  answer.

A hold that lapsed under a stream (the process stalled past its lease and
another request dropped it) stops the meter: :meth:`ChannelMeter.progress`
answers False and the handler stops sending; what was made final stays.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import anyio

from farthing.paywall.schemes.batch_settlement.holds import HeldCharge
from farthing.paywall.schemes.metering import MeterReceipt
from farthing.paywall.wire import b64_json

if TYPE_CHECKING:
    from farthing.paywall.schemes.batch_settlement.server import ChannelPaywall

__all__ = ["CHECKPOINT_S_DEFAULT", "ChannelMeter"]

CHECKPOINT_S_DEFAULT: Final = 0.1

log = logging.getLogger("farthing.paywall")


def _capped(amount: int, ceiling: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("a meter's amounts are ints of atomic units")
    return max(0, min(amount, ceiling))


class ChannelMeter:
    """One streamed request's held charge; see the module doc."""

    def __init__(
        self,
        channels: ChannelPaywall,
        held: HeldCharge,
        *,
        lease_s: float,
        checkpoint_s: float = CHECKPOINT_S_DEFAULT,
    ) -> None:
        self._channels = channels
        self._held = held
        self._hold = held.hold  # what is still held
        self._known = held.known  # the row as this request last wrote it
        self._ceiling = held.hold.amount
        self._charged = 0  # made final so far
        self._sent = 0  # reported sent so far
        self._lost = False
        self._receipt: MeterReceipt | None = None
        self._lock = anyio.Lock()
        self._lease_ns = int(lease_s * 1e9)
        self.checkpoint_s = min(checkpoint_s, lease_s / 4)

    def __repr__(self) -> str:
        return f"ChannelMeter(ceiling={self._ceiling}, sent={self._sent}, final={self._charged})"

    @property
    def ceiling(self) -> int:
        return self._ceiling

    @property
    def charged(self) -> int:
        """What is final on the channel row for this request so far."""
        return self._charged

    async def progress(self, amount: int) -> bool:
        self._sent = max(self._sent, _capped(amount, self._ceiling))
        return not self._lost and self._receipt is None

    async def checkpoint(self) -> None:
        """Make what was sent final, keep the rest held, and renew the lease when it needs it."""
        async with self._lock:
            if self._receipt is not None or self._lost:
                return
            delta = self._sent - self._charged
            now = time.time_ns()
            if delta <= 0 and self._hold.until_ns - now > self._lease_ns // 2:
                return
            until = now + self._lease_ns
            with anyio.CancelScope(shield=True):
                after = await self._channels.store.update_hold_async(
                    self._hold,
                    charge=delta,
                    keep=self._hold.amount - delta,
                    known=self._known,
                    until_ns=until,
                )
            if after is None:
                self._lost = True
                log.warning("a streamed charge's hold lapsed mid-stream; the stream stops")
                return
            self._charged += delta
            self._hold = replace(self._hold, amount=self._hold.amount - delta, until_ns=until)
            self._known = after

    async def keep_alive(self) -> None:
        """Checkpoint every ``checkpoint_s`` until cancelled (the handler returned)."""
        while True:
            await anyio.sleep(self.checkpoint_s)
            await self.checkpoint()

    async def finish(self, amount: int) -> MeterReceipt:
        async with self._lock:
            if self._receipt is not None:
                return self._receipt
            target = max(self._charged, _capped(amount, self._ceiling))
            with anyio.CancelScope(shield=True):
                after = None
                if not self._lost:
                    after = await self._channels.store.update_hold_async(
                        self._hold, charge=target - self._charged, keep=0, known=self._known
                    )
                if after is not None:
                    self._charged, self._known = target, after
                else:
                    self._lost = True
                    log.warning("a streamed charge's hold lapsed before its end; charged so far")
                held = self._held
                await self._channels._book_earned(
                    held.offer, held.known, held.cumulative, self._charged
                )
            self._receipt = self._receipt_of(self._known, final=after is not None)
            return self._receipt

    async def close(self, *, served: bool) -> MeterReceipt:
        """The handler ended: finish at what it reported sent (nothing if it did not answer 2xx)."""
        if self._receipt is not None:
            return self._receipt
        return await self.finish(self._sent if served else 0)

    def _receipt_of(self, record: Any, *, final: bool) -> MeterReceipt:
        held = self._held
        amount = str(self._charged)
        settlement = {
            "success": True,
            "transaction": held.deposit_tx,
            "network": held.offer.network,
            "payer": held.payer,
            "amount": amount,
            "extra": {
                "chargedAmount": amount,
                "channelState": dict(record.channel_state().to_wire()),
            },
        }
        return MeterReceipt(self._charged, settlement, b64_json(settlement), final)
