"""Claim and settle what channels earned: a strategy, a background task and ``farthing paywall claim``.

:class:`ChannelClaimer` reads the channel rows (``ChannelStore``) and, each
``tick()``:

1. refreshes from the chain every channel with unclaimed earnings (so a
   payer's ``initiateWithdraw`` is seen within one interval; sooner when a
   request's chain read sees it first: the store's ``withdrawal_seen`` wakes
   :meth:`run` at once);
2. claims, in one ``claimWithSignature`` batch signed by our receiver
   authorizer, every channel that is **due**: a timed withdrawal is pending
   (the withdraw delay is the only window left to claim), its unclaimed
   amount reached ``threshold``, or it has waited ``claim_every_s``. Each
   row claims what was charged, capped at what its escrow holds, and is
   simulated alone first: a row that reverts is dropped and reported, and
   the rest are claimed (:mod:`farthing.paywall.schemes.batch_settlement.claim_rows`); a
   charge above the escrow is reported as a shortfall;
3. settles (sweeps the claimed total to the receiver) after any claim, and
   whenever the escrow holds claimed money not yet swept (a cooperative
   refund claims without settling);
4. with a bookkeeper, books the ``Claimed`` and ``Settled`` events of the
   blocks it sent them in (:mod:`farthing.paywall.schemes.batch_settlement.books`).

**The margin before a withdrawal.** The interval is at most 600 s and the
shortest withdraw delay 900 s, so a withdrawal is seen, and what was charged
before it claimed, at least 300 s before it can finalize (870 s at the
default 30 s interval). From the moment the store's mirror shows it, vouchers
are taken only up to ``balance - withdrawal`` (``ChannelRecord.spendable``),
which the escrow still covers after the withdrawal finalizes, so nothing
charged later depends on a claim landing in time.

Claims carry ``totalClaimed = charged`` (at most the balance) and the payer's
highest voucher; the contract makes a repeat a no-op, so a claim that is retried after a crash can
never take more than was earned. :meth:`run` is the loop the middleware
starts with the app (ASGI lifespan); :meth:`tick` with ``force=True`` is what
``farthing paywall claim`` runs once.

**After a crash.** A process can die after its claim or settle transaction
landed and before it booked the events (``paywall.channel_after_claim``,
``paywall.channel_after_settle``), or after a voucher's charge was recorded
on the channel row and before it was booked as earned. So a claimer's first
tick in a process, and every forced tick, **catches up**: it books the
``Claimed`` and ``Settled`` events of the last ``book_lookback_blocks`` blocks
(booking ids are derived from the events, so a second booking answers
``exists``), and books as earned what a channel row charged beyond its
receivable, for channels idle for ``earned_quiet_s`` (a live request books
its own charge between its charge and its answer; the quiet period keeps the
catch-up out of that window). It is booked under an id derived from the
channel's charged total, so catching up twice books it once. Then a
claimed-but-unsettled total is settled as usual.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Final

import anyio
import anyio.to_thread

from farthing.faults import crash_point
from farthing.ledger import LedgerError, lookup_accounts
from farthing.paywall.errors import (
    FacilitatorUnavailableError,
    PaymentStoreError,
    PaywallConfigError,
)
from farthing.paywall.records.books import ChannelAsset, LedgerRevenueBook, account_id
from farthing.paywall.schemes.batch_settlement.books import BookedEvents, ChannelBookkeeper
from farthing.paywall.schemes.batch_settlement.claim_rows import (
    claim_row,
    claim_total,
    simulate_claims,
)
from farthing.paywall.schemes.batch_settlement.facilitator import ChannelSettling
from farthing.paywall.schemes.batch_settlement.redeem import ClaimPayload, SettlePayload
from farthing.paywall.schemes.batch_settlement.state import ChannelRecord, ChannelStore
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment, ChannelRequirements
from farthing.paywall.schemes.batch_settlement.vouchers import ClaimEntry, sign_claim_batch
from farthing.wallet.address import checksum
from farthing.wallet.errors import WalletError
from farthing.wallet.signer import Signer

__all__ = [
    "BOOK_LOOKBACK_BLOCKS",
    "CLAIMS_PER_BATCH_MAX",
    "EARNED_QUIET_S",
    "ChannelClaimer",
    "ClaimReport",
]

CLAIMS_PER_BATCH_MAX: Final = 100
# How often a sleeping claimer looks whether a withdrawal was seen (a flag read).
WAKE_POLL_S: Final = 0.25
# How far back a catching-up tick books escrow events: about 2.3 days of Base blocks.
BOOK_LOOKBACK_BLOCKS: Final = 100_000
# A channel idle this long has no request between its charge and its booking.
EARNED_QUIET_S: Final = 5.0

log = logging.getLogger("farthing.paywall")


@dataclass(frozen=True, slots=True)
class ClaimReport:
    """One tick: what was claimed (atomic units per channel id) and the transactions."""

    claimed: dict[str, int] = field(default_factory=dict)
    transactions: tuple[str, ...] = ()
    settled: int = 0
    failures: tuple[str, ...] = ()
    booked: BookedEvents | None = None
    earned_caught_up: dict[str, int] = field(default_factory=dict)
    # Charged above what the channel's escrow holds (atomic units per channel
    # id): never claimable; reconciliation reports it as charged_above_balance.
    shortfalls: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "claimed": {k: str(v) for k, v in self.claimed.items()},
            "transactions": list(self.transactions),
            "settled": str(self.settled),
            "failures": list(self.failures),
        }
        if self.shortfalls:
            out["shortfalls"] = {k: str(v) for k, v in self.shortfalls.items()}
        if self.earned_caught_up:
            out["earned_caught_up"] = {k: str(v) for k, v in self.earned_caught_up.items()}
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
        book_lookback_blocks: int = BOOK_LOOKBACK_BLOCKS,
        earned_quiet_s: float = EARNED_QUIET_S,
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
        if book_lookback_blocks < 0 or earned_quiet_s < 0:
            raise PaywallConfigError("book_lookback_blocks and earned_quiet_s must not be negative")
        self.book_lookback_blocks = book_lookback_blocks
        self.earned_quiet_s = earned_quiet_s
        self._caught_up = False  # this process has not yet booked what a dead one may have left
        self._short_logged: set[str] = set()  # shortfalls already logged by this process

    def __repr__(self) -> str:
        return f"ChannelClaimer({self.store!r}, every {self.interval_s} s)"

    def _due(self, record: ChannelRecord, now_ns: int, force: bool) -> bool:
        if claim_total(record) <= record.total_claimed or record.signature is None:
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
            rows, dropped = await self._simulated(groups.get((receiver, token), []))
            failures.extend(dropped)
            claimed_here = False
            for start in range(0, len(rows), CLAIMS_PER_BATCH_MAX):
                batch = rows[start : start + CLAIMS_PER_BATCH_MAX]
                ok, outcome = await self._claim(requirements, batch)
                if not ok:
                    failures.append(outcome)
                    continue
                transactions.append(outcome)
                crash_point("paywall.channel_after_claim")
                claimed_here = True
                for r in batch:
                    claimed["0x" + r.channel_id.hex()] = claim_total(r) - r.total_claimed
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
                    crash_point("paywall.channel_after_settle")
                    swept += settled.amount or 0
                else:
                    failures.append(settled.reason or "settle_failed")
        if claimed:
            await anyio.to_thread.run_sync(self._refresh)
        booked = None
        earned: dict[str, int] = {}
        catch_up = self.bookkeeper is not None and (force or not self._caught_up)
        if catch_up:
            now = await self._head(always=True)
            head = None if now is None else max(0, now - self.book_lookback_blocks)
        if (transactions or catch_up) and head is not None and self.bookkeeper is not None:
            keeper = self.bookkeeper
            start = head
            try:
                booked = await anyio.to_thread.run_sync(lambda: keeper.sync(from_block=start))
                if catch_up:
                    earned = await anyio.to_thread.run_sync(self._book_missed_earnings)
            except (PaymentStoreError, WalletError, LedgerError) as exc:
                failures.append(f"books: {exc}")
            else:
                failures.extend(booked.failures)
                self._caught_up = self._caught_up or not booked.failures
        shortfalls = {
            "0x" + r.channel_id.hex(): r.charged - r.balance for r in ours if r.charged > r.balance
        }
        for cid in shortfalls.keys() - self._short_logged:
            self._short_logged.add(cid)
            log.warning("channel %s charged %d above what its escrow holds", cid, shortfalls[cid])
        return ClaimReport(
            claimed, tuple(transactions), swept, tuple(failures), booked, earned, shortfalls
        )

    def _book_missed_earnings(self) -> dict[str, int]:
        """Book as earned what idle channel rows charged beyond their receivable (a request died unbooked)."""
        keeper = self.bookkeeper
        if keeper is None or not isinstance(keeper.book, LedgerRevenueBook):
            return {}
        book = keeper.book
        quiet_ns = int(self.earned_quiet_s * 1e9)
        now_ns = time.time_ns()
        out: dict[str, int] = {}
        for record in self.store.records():
            if record.last_request_at_ns is None or now_ns - record.last_request_at_ns < quiet_ns:
                continue
            asset: ChannelAsset | None = keeper.assets.get(checksum(record.config.token))
            if asset is None:
                continue
            cid = "0x" + record.channel_id.hex()
            receivable = account_id("receivable", book.ledger_of(asset), cid)
            with book.database.read() as session:
                found = lookup_accounts(session=session, ids=[receivable])
            earned = found[0].debits_posted if found else 0
            missing = record.charged - earned
            if missing <= 0:
                continue
            # Keyed by the charged total and no request time, unlike any request's
            # own booking: a second catch-up at the same total answers ``exists``.
            caught = replace(record, last_request_at_ns=None)
            result = keeper.earned(asset, caught, record.charged, missing, "")
            if result is not None and result.booked:
                out[cid] = missing
                log.info("booked %d earned on channel %s that a dead request left", missing, cid)
        return out

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

    async def _head(self, *, always: bool = False) -> int | None:
        """The block to book events from: the head before our transactions."""
        escrow = self.store.escrow
        if escrow is None or (self.bookkeeper is None and not always):
            return None
        try:
            head: int = await anyio.to_thread.run_sync(escrow.chain.block_number)
        except WalletError:
            return None
        return head

    async def _simulated(self, rows: list[ChannelRecord]) -> tuple[list[ChannelRecord], list[str]]:
        """The rows whose claim runs alone, and a failure line for each one dropped."""
        escrow = self.store.escrow
        if escrow is None or not rows:
            return rows, []
        domain, authorizer = self.store.domain, self.authorizer
        return await anyio.to_thread.run_sync(
            lambda: simulate_claims(escrow, domain, authorizer, rows)
        )

    async def _claim(
        self, requirements: ChannelRequirements, rows: list[ChannelRecord]
    ) -> tuple[bool, str]:
        """``(True, transaction)`` or ``(False, why)``."""
        claims = tuple(claim_row(r) for r in rows)
        entries = [ClaimEntry(r.channel_id, r.signed_max, claim_total(r)) for r in rows]
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
        """Tick every ``interval_s``, or at once when a withdrawal shows, until cancelled."""
        while True:
            self.store.withdrawal_seen.clear()
            report = await self.tick()
            for failure in report.failures:
                log.warning("channel claim failed: %s", failure)
            await self._nap()

    async def _nap(self) -> None:
        """Sleep ``interval_s``; wake early when the store saw a new timed withdrawal."""
        deadline = anyio.current_time() + self.interval_s
        while not self.store.withdrawal_seen.is_set():
            left = deadline - anyio.current_time()
            if left <= 0:
                return
            await anyio.sleep(min(left, WAKE_POLL_S))
