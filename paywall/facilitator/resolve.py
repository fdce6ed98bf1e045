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

An ``upto`` row (its nonce is Permit2's, not EIP-3009's) is resolved as
``upto`` (:func:`resolve_upto`, over ``farthing.paywall.schemes.upto.settlement``):
the named settlement's receipt, else Permit2's nonce bitmap and the
x402UptoPermit2Proxy's logs. A spent nonce whose settlement paid the payee is
``settled`` at what it moved (the charge, at most the ceiling); a spent
nonce with no such settlement ``failed``; an unused one past its deadline
``expired``; an unused one whose settlement is still in the node's pool, or
inside its window, stays ``pending``.

It also books every settled payment whose revenue an earlier failure left
unbooked, at what it moved (:attr:`PaymentRecord.charge`: an ``upto`` row's
charge, never its ceiling; a charge of 0 has nothing to book); the ledger's
idempotent ids make that safe to repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.facilitator.onchain import chain_outage
from farthing.paywall.records.books import RevenueBook, SettledPayment
from farthing.paywall.records.payments import PaymentRecord, PaymentState
from farthing.paywall.records.store import CLAIM_LEASE_S_DEFAULT, PaymentStore
from farthing.paywall.schemes.upto.settlement import PermitOutcome, permit_outcome
from farthing.paywall.wire import PaymentRequirements, SettleResult
from farthing.wallet.chain import Chain
from farthing.wallet.token import read_asset

__all__ = ["UPTO_LOOKBACK_BLOCKS", "SweepReport", "resolve_upto", "sweep", "upto_settle_result"]

# How far back the proxy's logs are searched for a spent permit's settlement.
UPTO_LOOKBACK_BLOCKS: Final = 10_000


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


def resolve_upto(
    chain: Chain, record: PaymentRecord, *, lookback_blocks: int = UPTO_LOOKBACK_BLOCKS
) -> PermitOutcome:
    """What the chain shows of an ``upto`` row's permit; a chain outage is ``FacilitatorUnavailableError``."""
    with chain_outage(chain):
        return permit_outcome(
            chain,
            owner=record.key.payer,
            nonce=int(record.key.nonce, 16),
            token=record.key.token,
            pay_to=record.pay_to,
            tx_hash=record.tx_hash or None,
            lookback_blocks=lookback_blocks,
        )


def upto_settle_result(record: PaymentRecord, outcome: PermitOutcome) -> SettleResult | None:
    """A settled outcome as the ``SettleResult`` it stands for, its amount capped at the ceiling."""
    found = outcome.settlement
    if outcome.state != "settled" or found is None:
        return None
    return SettleResult(
        True,
        record.key.network,
        found.tx_hash,
        record.key.payer,
        min(found.amount, record.amount),
        block_number=found.block_number,
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
        if record.scheme == "upto":
            moved = _sweep_upto(store, facilitator.chain, record, claim.owner, clock)
            settled += moved == "settled"
            failed += moved == "failed"
            expired += moved == "expired"
            still += moved == "pending"
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
            if not record.bookable:
                continue  # an upto row settled without its charge: its ceiling is not revenue
            if record.charge == 0:
                store.mark_booked(record.key)  # nothing moved, nothing to book
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
                    amount=record.charge,
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


def _sweep_upto(
    store: PaymentStore,
    chain: Chain,
    record: PaymentRecord,
    owner: str,
    clock: Callable[[], float],
) -> str:
    """Resolve one taken-over ``upto`` row from Permit2 and the proxy; the state it ends in."""
    key = record.key
    try:
        outcome = resolve_upto(chain, record)
    except BaseException:
        store.mark_pending(key, owner, reason="settlement_unknown", tx_hash=record.tx_hash)
        raise
    settled = upto_settle_result(record, outcome)
    if settled is not None:
        store.mark_settled(
            key,
            owner,
            tx_hash=settled.transaction,
            block_number=settled.block_number,
            amount=settled.amount,
            keep_lease=False,
        )
        return "settled"
    if outcome.state == "used_elsewhere":
        store.mark_failed(key, owner, reason="permit2_nonce_used_elsewhere")
        return "failed"
    if outcome.state == "unused" and clock() > record.valid_before:
        store.mark_expired(key, owner)  # Permit2 refuses it past its deadline: no money can move
        return "expired"
    store.mark_pending(key, owner, reason=record.reason or "owner_lost", tx_hash=record.tx_hash)
    return "pending"
