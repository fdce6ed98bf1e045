"""Claim and settle what channels earned: a strategy, a background task and ``farthing paywall claim``.

:class:`ChannelClaimer` reads the channel rows (``ChannelStore``) and, each
``tick()``:

1. refreshes from the chain every channel with unclaimed earnings (so a
   payer's ``initiateWithdraw`` is seen within one interval);
2. claims, in one ``claimWithSignature`` batch signed by our receiver
   authorizer, every channel that is **due**: a timed withdrawal is pending
   (the withdraw delay is the only window left to claim, and the
   interval is far shorter than the 900 s minimum delay), its unclaimed
   amount reached ``threshold``, or it has waited ``claim_every_s``;
3. settles (sweeps the claimed total to the receiver) after any claim, and
   whenever the escrow holds claimed money not yet swept (a cooperative
   refund claims without settling);
4. with a bookkeeper, books the ``Claimed`` and ``Settled`` events of the
   blocks it sent them in (:mod:`farthing.paywall.channel_books`).

Claims carry ``totalClaimed = charged`` and the payer's highest voucher; the
contract makes a repeat a no-op, so a claim that is retried after a crash can
never take more than was earned. :meth:`run` is the loop the middleware
starts with the app (ASGI lifespan); :meth:`tick` with ``force=True`` is what
``farthing paywall claim`` runs once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import anyio.to_thread

from farthing.ledger import LedgerError
from farthing.paywall.channel_books import BookedEvents, ChannelBookkeeper
from farthing.paywall.channel_facilitator import ChannelSettling
from farthing.paywall.channel_state import ChannelRecord, ChannelStore
from farthing.paywall.channel_types import ChannelPayment, ChannelRequirements
from farthing.paywall.channel_wire import ClaimPayload, SettlePayload
from farthing.paywall.errors import (
    FacilitatorUnavailableError,
    PaymentStoreError,
    PaywallConfigError,
)
from farthing.wallet.channels import ClaimEntry, sign_claim_batch
from farthing.wallet.errors import WalletError
from farthing.wallet.escrow import VoucherClaim
from farthing.wallet.signer import Signer

__all__ = ["CLAIMS_PER_BATCH_MAX", "ChannelClaimer", "ClaimReport"]

CLAIMS_PER_BATCH_MAX: Final = 100

log = logging.getLogger("farthing.paywall")


@dataclass(frozen=True, slots=True)
class ClaimReport:
    """One tick: what was claimed (atomic units per channel id) and the transactions."""

    claimed: dict[str, int] = field(default_factory=dict)
    transactions: tuple[str, ...] = ()
    settled: int = 0
    failures: tuple[str, ...] = ()
    booked: BookedEvents | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "claimed": {k: str(v) for k, v in self.claimed.items()},
            "transactions": list(self.transactions),
            "settled": str(self.settled),
            "failures": list(self.failures),
        }
        if self.booked is not None:
            out["booked"] = {"claims": self.booked.claims, "settles": self.booked.settles}
        return out


class ChannelClaimer:
    """Claims and settles a receiver's channels through a facilitator."""

    def __init__(
        self,
        store: ChannelStore,
        facilitator: object,
        authorizer: Signer,
        *,
        interval_s: float = 30.0,
        claim_every_s: float = 3600.0,
        threshold: int | None = None,
        bookkeeper: ChannelBookkeeper | None = None,
    ) -> None:
        if not isinstance(facilitator, ChannelSettling):
            raise PaywallConfigError("the claimer needs a facilitator with settle_channel")
        if not 0.05 <= interval_s <= 600:
            raise PaywallConfigError("interval_s must be between 0.05 s and 600 s")
        if claim_every_s < interval_s:
            raise PaywallConfigError("claim_every_s must be at least interval_s")
        self.store = store
        self.facilitator: ChannelSettling = facilitator
        self.authorizer = authorizer
        self.interval_s = interval_s
        self.claim_every_s = claim_every_s
        self.threshold = threshold
        self.bookkeeper = bookkeeper

    def __repr__(self) -> str:
        return f"ChannelClaimer({self.store!r}, every {self.interval_s} s)"

    def _due(self, record: ChannelRecord, now_ns: int, force: bool) -> bool:
        if record.unclaimed <= 0 or record.signature is None:
            return False
        if record.config.receiver_authorizer != self.authorizer.address:
            return False  # another authorizer's channel: not ours to sign
        if force or record.withdraw_requested_at > 0:
            return True
        if self.threshold is not None and record.unclaimed >= self.threshold:
            return True
        since = record.last_request_at_ns or record.onchain_synced_at_ns
        return now_ns - since >= int(self.claim_every_s * 1e9)

    def _refresh(self) -> list[ChannelRecord]:
        """Re-read the chain for every channel with unclaimed earnings (withdrawals show here)."""
        escrow = self.store.escrow
        records = self.store.records()
        if escrow is None:
            return records
        out = []
        for record in records:
            if record.unclaimed > 0:
                try:
                    record = self.store.mirror(record.config, escrow.snapshot(record.channel_id))
                except WalletError as exc:
                    log.warning("could not read channel %s: %s", record.channel_id.hex(), exc)
            out.append(record)
        return out

    async def tick(
        self, *, force: bool = False, only: frozenset[bytes] | None = None
    ) -> ClaimReport:
        """Claim what is due (of the ``only`` channel ids, when given), then settle.

        Failures are reported, never raised."""
        try:
            records = await anyio.to_thread.run_sync(self._refresh)
        except (PaymentStoreError, WalletError) as exc:
            return ClaimReport(failures=(str(exc),))
        now_ns = time.time_ns()
        ours = [
            r
            for r in records
            if (only is None or r.channel_id in only)
            and r.config.receiver_authorizer == self.authorizer.address
        ]
        due = [r for r in ours if self._due(r, now_ns, force)]
        groups: dict[tuple[str, str], list[ChannelRecord]] = {}
        for record in due:
            groups.setdefault((record.config.receiver, record.config.token), []).append(record)
        # Claimed but never swept (a cooperative refund claims without settling,
        # or an earlier settle failed): settle those too.
        pairs = {(r.config.receiver, r.config.token) for r in ours} - set(groups)
        unsettled = await anyio.to_thread.run_sync(self._unsettled, pairs)
        head = await self._head() if groups or unsettled else None
        claimed: dict[str, int] = {}
        transactions: list[str] = []
        failures: list[str] = []
        swept = 0
        for receiver, token in sorted({*groups, *unsettled}):
            requirements = ChannelRequirements(self.store.network, token, 0, receiver, 0, {})
            rows = groups.get((receiver, token), [])
            claimed_here = False
            for start in range(0, len(rows), CLAIMS_PER_BATCH_MAX):
                batch = rows[start : start + CLAIMS_PER_BATCH_MAX]
                ok, outcome = await self._claim(requirements, batch)
                if not ok:
                    failures.append(outcome)
                    continue
                transactions.append(outcome)
                claimed_here = True
                for r in batch:
                    claimed["0x" + r.channel_id.hex()] = r.unclaimed
            if claimed_here or (receiver, token) in unsettled:
                payload = SettlePayload(receiver, token).to_wire()
                try:
                    settled = await self.facilitator.settle_channel(
                        ChannelPayment(requirements, payload), requirements
                    )
                except FacilitatorUnavailableError as exc:
                    failures.append(str(exc))
                    continue
                if settled.success:
                    transactions.append(settled.transaction)
                    swept += settled.amount or 0
                else:
                    failures.append(settled.reason or "settle_failed")
        if claimed:
            await anyio.to_thread.run_sync(self._refresh)
        booked = None
        if transactions and head is not None and self.bookkeeper is not None:
            keeper = self.bookkeeper
            try:
                booked = await anyio.to_thread.run_sync(lambda: keeper.sync(from_block=head))
            except (PaymentStoreError, WalletError, LedgerError) as exc:
                failures.append(f"books: {exc}")
            else:
                failures.extend(booked.failures)
        return ClaimReport(claimed, tuple(transactions), swept, tuple(failures), booked)

    def _unsettled(self, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (receiver, token) pairs whose claimed total on chain is above the settled one."""
        escrow = self.store.escrow
        if escrow is None:
            return set()
        out = set()
        for receiver, token in pairs:
            try:
                total_claimed, total_settled = escrow.receiver(receiver, token)
            except WalletError as exc:
                log.warning("could not read the receiver's totals: %s", type(exc).__name__)
                continue
            if total_claimed > total_settled:
                out.add((receiver, token))
        return out

    async def _head(self) -> int | None:
        """The block to book events from: the head before our transactions."""
        escrow = self.store.escrow
        if escrow is None or self.bookkeeper is None:
            return None
        try:
            head: int = await anyio.to_thread.run_sync(escrow.chain.block_number)
        except WalletError:
            return None
        return head

    async def _claim(
        self, requirements: ChannelRequirements, rows: list[ChannelRecord]
    ) -> tuple[bool, str]:
        """``(True, transaction)`` or ``(False, why)``."""
        claims = tuple(
            VoucherClaim(r.config, r.signed_max, r.signature or b"", r.charged) for r in rows
        )
        entries = [ClaimEntry(r.channel_id, r.signed_max, r.charged) for r in rows]
        signature = sign_claim_batch(self.authorizer, self.store.domain, entries)
        payload = ClaimPayload(claims, signature).to_wire()
        try:
            result = await self.facilitator.settle_channel(
                ChannelPayment(requirements, payload), requirements
            )
        except FacilitatorUnavailableError as exc:
            return False, f"claim: {exc}"
        if not result.success:
            return False, f"claim: {result.reason or 'failed'} {result.message or ''}".strip()
        return True, result.transaction

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled (the app's lifespan)."""
        while True:
            report = await self.tick()
            for failure in report.failures:
                log.warning("channel claim failed: %s", failure)
            await anyio.sleep(self.interval_s)
