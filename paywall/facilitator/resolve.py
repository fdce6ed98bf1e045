"""The sweep: settle the books on what the chain says, for payments left open.

A payment is left open when its settlement's outcome was unknown (a receipt
timeout, an RPC lost mid-settle: *pending*), or when the process settling it
died (killed, crashed, power lost: *claimed* by an owner whose lease has run
out). The middleware finishes one when the payer retries; :func:`sweep`
finishes all of them without waiting for a retry. It takes each row over
with a compare-and-swap (``PaymentStore.take_over``; a live owner's claim is
never touched), then reads only the chain, never guessing:

* the settlement's receipt, or the token's ``AuthorizationUsed`` log, shows
  the price moved to the merchant → ``settled`` (and booked); the payer's
  retry with the same header then gets the content, once;
* the nonce was used by some other transfer → ``failed``;
* the nonce is unused and ``validBefore`` has passed → ``expired``: it can
  never be executed any more, so it is closed unpaid;
* otherwise it is left ``pending`` for the next sweep or the payer's retry,
  which serves and settles it.

It also books every settled payment whose revenue an earlier failure left
unbooked; the ledger's idempotent ids make that safe to repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.records.books import RevenueBook, SettledPayment
from farthing.paywall.records.payments import PaymentRecord, PaymentState
from farthing.paywall.records.store import CLAIM_LEASE_S_DEFAULT, PaymentStore
from farthing.paywall.wire import PaymentRequirements
from farthing.wallet.token import read_asset

__all__ = ["SweepReport", "sweep"]


@dataclass(frozen=True, slots=True)
class SweepReport:
    settled: int = 0
    failed: int = 0
    expired: int = 0
    still_pending: int = 0
    booked: int = 0


def _requirements(record: PaymentRecord) -> PaymentRequirements:
    # Resolution reads the Transfer log only; the EIP-712 name is not needed.
    return PaymentRequirements(
        network=record.key.network,
        asset=record.key.token,
        amount=record.amount,
        pay_to=record.pay_to,
        max_timeout_seconds=300,
        token_name="",
        token_version="",
    )


def sweep(
    store: PaymentStore,
    facilitator: LocalFacilitator,
    books: RevenueBook | None = None,
    *,
    clock: Callable[[], float] = time.time,
    lease_s: float = CLAIM_LEASE_S_DEFAULT,
) -> SweepReport:
    """Resolve every open payment from the chain, then book what is unbooked.

    ``lease_s`` is the sweep's own lease on a row while it reads the chain
    (should the sweep die too, the row opens again after it).
    """
    settled = failed = expired = still = booked = 0
    for record in store.sweepable():
        if record.key.network != facilitator.network:
            still += 1
            continue
        claim = store.take_over(record.key, lease_s=lease_s)
        if not claim.won or claim.existing is None:
            continue  # someone else is finishing it
        record = claim.existing
        if record.state == PaymentState.SETTLED:
            store.give_back(record.key, claim.owner)  # settled meanwhile: only booking is left
            continue
        payer = record.key.payer
        nonce = bytes.fromhex(record.key.nonce[2:])
        try:
            outcome = facilitator.resolve_sync(_requirements(record), payer, nonce, record.tx_hash)
        except BaseException:
            store.mark_pending(
                record.key, claim.owner, reason="settlement_unknown", tx_hash=record.tx_hash
            )
            raise
        if outcome is not None and outcome.success:
            # No lease kept: the payer's retry may collect the content at once.
            store.mark_settled(
                record.key,
                claim.owner,
                tx_hash=outcome.transaction,
                block_number=outcome.block_number,
                keep_lease=False,
            )
            settled += 1
        elif outcome is not None:
            store.mark_failed(record.key, claim.owner, reason=outcome.reason or "failed")
            failed += 1
        elif clock() > record.valid_before:
            store.mark_expired(record.key, claim.owner)
            expired += 1
        else:
            store.mark_pending(
                record.key,
                claim.owner,
                reason=record.reason or "owner_lost",
                tx_hash=record.tx_hash,
            )
            still += 1
    if books is not None:
        assets = {}
        for record in store.unbooked():
            if record.key.network != facilitator.network or record.tx_hash is None:
                continue
            if record.key.token not in assets:
                assets[record.key.token] = read_asset(facilitator.chain, record.key.token)
            asset = assets[record.key.token]
            result = books.record_settlement(
                SettledPayment(
                    network=record.key.network,
                    token=record.key.token,
                    decimals=asset.decimals,
                    symbol=asset.symbol,
                    payer=record.key.payer,
                    pay_to=record.pay_to,
                    nonce=record.key.nonce,
                    amount=record.amount,
                    tx_hash=record.tx_hash,
                    block_number=record.block_number,
                    route=record.route,
                    resource=record.resource,
                    valid_after=record.valid_after,
                    valid_before=record.valid_before,
                    fiat_currency=record.fiat_currency,
                    fiat_rate=record.fiat_rate,
                )
            )
            if result.booked:
                store.mark_booked(record.key)
                booked += 1
    return SweepReport(settled, failed, expired, still, booked)
