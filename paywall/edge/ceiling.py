"""An ``upto`` payment's streamed answer: the signed ceiling covers it, its usage is settled once at the end.

The outer app asks for a meter on the request
(``farthing.paywall.schemes.metering``; the inference gateway does for
``"stream": true``). On an ``upto`` payment, once the permit is verified and
its nonce claimed (``farthing.paywall.edge.upto.UptoPaidPath``),
:func:`serve_metered` runs the handler **unbuffered** with an
:class:`UptoMeter` in its scope (the relay of ``farthing.paywall.edge.metered``:
private, never cached, ``Farthing-Charge`` stripped):

- **progress**: the handler reports the charge for what it has sent so far;
  nothing moves on chain meanwhile (an ``upto`` permit settles once, spec:
  *single-use authorization*); the meter only remembers it, and keeps the
  payment's claim alive while the stream lasts;
- **finish**: the real charge (the handler's, from the upstream's usage),
  capped at the ceiling, is settled on chain in one transaction (settle-time
  verification against the signed ceiling; 0 sends nothing), recorded and
  booked as revenue, and the ``PAYMENT-RESPONSE`` is returned for the
  handler's last event;
- **close**: a 2xx handler that ended without finishing (the client left,
  the upstream broke off) is settled at what it last reported sent; a
  non-2xx answer is charged nothing and the claim released.

A settlement that fails or stays pending after the content went out cannot
be answered with a 402 or a 503: its receipt (``success: false``, or
``settlement_pending``) goes in the last event, the payment's row says so,
and a pending one is resolved from the chain as ``upto`` by the sweep
(``farthing.paywall.facilitator.resolve``: settled at what moved, booked
once); its row is marked delivered, so a retry of the same header never gets
the stream again. Every settled row records its charge (never the ceiling),
which is what the sweep books. A process that dies mid-stream settles
nothing: the payer keeps its money, and its retry of the same header (the
claim's lease run out) is served afresh and charged for that answer, or the
permit expires at its deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from farthing.paywall.edge.asgi import Send, in_thread
from farthing.paywall.edge.metered import run_with_meter
from farthing.paywall.edge.resume import settled_elsewhere
from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.records.payments import PaymentKey
from farthing.paywall.schemes.metering import MeterReceipt
from farthing.paywall.wire import SettleResult

if TYPE_CHECKING:
    from farthing.paywall.edge.challenge import Priced
    from farthing.paywall.edge.upto import UptoPaidPath
    from farthing.paywall.schemes.upto.wire import UptoPayment

__all__ = ["UptoMeter", "serve_metered"]

log = logging.getLogger("farthing.paywall")

# How often a stream renews its payment's claim, as a share of the lease.
_RENEW_SHARE: Final = 3


def _capped(amount: int, ceiling: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("a meter's amounts are ints of atomic units")
    return max(0, min(amount, ceiling))


class UptoMeter:
    """One streamed ``upto`` request: what was sent, then one settlement; see the module doc."""

    def __init__(
        self,
        *,
        ceiling: int,
        settle: Callable[[int], Awaitable[SettleResult]],
        release: Callable[[], Awaitable[None]],
        renew: Callable[[], Awaitable[None]],
        lease_s: float,
    ) -> None:
        self._ceiling = ceiling
        self._settle = settle
        self._release = release
        self._renew = renew
        self._sent = 0
        self._receipt: MeterReceipt | None = None
        self._released = False
        self._lock = anyio.Lock()
        self.renew_s = max(lease_s / _RENEW_SHARE, 0.05)

    def __repr__(self) -> str:
        return f"UptoMeter(ceiling={self._ceiling}, sent={self._sent})"

    @property
    def ceiling(self) -> int:
        return self._ceiling

    async def progress(self, amount: int) -> bool:
        self._sent = max(self._sent, _capped(amount, self._ceiling))
        return self._receipt is None and not self._released

    async def keep_alive(self) -> None:
        """Renew the payment's claim until cancelled (the handler returned)."""
        while True:
            await anyio.sleep(self.renew_s)
            await self._renew()

    async def finish(self, amount: int) -> MeterReceipt:
        """Settle ``amount`` (capped at the ceiling) once; every later call gets the same receipt."""
        async with self._lock:
            if self._receipt is not None:
                return self._receipt
            charge = _capped(amount, self._ceiling)
            with anyio.CancelScope(shield=True):
                settled = await self._settle(charge)
            settlement = settled.to_wire()
            self._receipt = MeterReceipt(
                charge if settled.success else 0, settlement, settled.header(), settled.success
            )
            return self._receipt

    async def close(self, *, served: bool) -> MeterReceipt | None:
        """The handler ended: settle what it reported sent, or release the claim if it did not answer 2xx."""
        if self._receipt is not None:
            return self._receipt
        if served:
            return await self.finish(self._sent)
        async with self._lock:
            if not self._released:
                self._released = True
                with anyio.CancelScope(shield=True):
                    await self._release()
        return None


async def serve_metered(
    path: UptoPaidPath,
    scope: dict[str, Any],
    receive: Any,
    send: Send,
    *,
    priced: Priced,
    payment: UptoPayment,
    key: PaymentKey,
    owner: str,
) -> None:
    """Run the handler unbuffered with an :class:`UptoMeter`; settle once when it ends."""
    offer = priced.upto
    assert offer is not None  # serve() answered 402 before claiming otherwise
    store, lease_s = path.store, path.claim_lease_s

    async def settle(charge: int) -> SettleResult:
        await in_thread(store.renew, key, owner, lease_s=lease_s)
        try:
            settled = await path.facilitator.settle_upto(payment, offer.charging(charge))
        except FacilitatorUnavailableError as exc:
            await in_thread(
                store.mark_pending, key, owner,
                reason="settlement_unknown", tx_hash=None, delivered=True,
            )  # fmt: skip
            return SettleResult(
                False, offer.network, "", payment.payer, charge, "settlement_pending", str(exc),
                pending=True,
            )  # fmt: skip
        if not settled.success and not settled.pending:
            # Perhaps spent first by an earlier owner's settlement of this permit: the chain decides.
            settled = await settled_elsewhere(path, key, settled)
            if settled.success and settled.amount is not None:
                charge = settled.amount
        if settled.pending:
            # The stream went out: resolved from the chain later, never delivered again.
            await in_thread(
                store.mark_pending, key, owner, delivered=True,
                reason=settled.reason or "settlement_pending", tx_hash=settled.transaction or None,
            )  # fmt: skip
            return settled
        if not settled.success:
            log.warning("a streamed upto answer was not settled: %s", settled.reason)
            await in_thread(
                store.mark_failed, key, owner, reason=settled.reason or "settlement_failed"
            )
            return settled
        await in_thread(
            store.mark_settled, key, owner,
            tx_hash=settled.transaction, block_number=settled.block_number, amount=charge,
        )  # fmt: skip
        await path._book(priced, payment, key, settled, charge)  # 0: marked booked, nothing posted
        await in_thread(store.mark_delivered, key, owner)
        return settled

    async def release() -> None:
        await in_thread(store.release, key, owner)

    async def renew() -> None:
        await in_thread(store.renew, key, owner, lease_s=lease_s)

    meter = UptoMeter(
        ceiling=offer.amount, settle=settle, release=release, renew=renew, lease_s=lease_s
    )
    # run_with_meter needs keep_alive() and close(served=): UptoMeter has both.
    await run_with_meter(path.app, scope, receive, send, cast(Any, meter))
