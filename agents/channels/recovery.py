"""What the chain says of a channel the agent's records lost track of.

* :func:`cold_start`: a slot the books do not know; whatever the escrow
  holds for it is ours (a lost database).
* :func:`adopt`: the channel's last request never had its answer booked (its
  process died, or the answer was lost). Its deposit is settled from the
  chain and offered again while still valid; its charge is posted when the
  chain's ``totalClaimed`` proves it, or left reserved for the next request
  to re-present.
* :func:`resolve_deposits`: a channel's reserved deposits, posted or voided
  from the token's record of their authorizations.
* :func:`settle_deposit_from_chain`: a refused request's deposit, posted if
  the escrow shows it, voided if not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from farthing.agents.channels.books import (
    OpenDeposit,
    booked_charges,
    open_charge,
    open_deposits,
    post_charge,
    post_deposit,
    void_pending,
)
from farthing.agents.channels.store import ChannelRow, Lease, get_channel, update_channel
from farthing.paywall.schemes.batch_settlement.client import channel_key, deposit_nonce_hex
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS
from farthing.wallet.errors import ChainError
from farthing.wallet.token import Stablecoin

if TYPE_CHECKING:
    from farthing.agents.channels.payer import ChannelPayer
    from farthing.agents.channels.prepared import ChannelPrepared

__all__ = [
    "Adopted",
    "adopt",
    "cold_start",
    "last_event_tx",
    "resolve_deposits",
    "settle_deposit_from_chain",
]

log = logging.getLogger("farthing.agents")


@dataclass(frozen=True, slots=True)
class Adopted:
    """What :func:`adopt` learned about a channel whose last request died."""

    row: ChannelRow
    orphan_id: int | None  # the dead request's charge, still reserved
    orphan_ceiling: int
    resend: OpenDeposit | None  # its deposit, unused on chain and still inside its window


def cold_start(channels: ChannelPayer, lease: Lease) -> ChannelRow:
    """A slot the books do not know: whatever the chain holds for it is ours (a lost database)."""
    snapshot = channels.escrow.snapshot(channel_key(lease.channel_id))
    # The ledger may have outlived the channel records: what it booked was
    # charged. The seller's corrective 402 settles any difference.
    charged = min(
        snapshot.balance,
        max(snapshot.total_claimed, booked_charges(channels.books, lease.channel_id)),
    )
    values = {
        "balance": snapshot.balance,
        "charged": charged,
        "signed_max": charged,
        "total_claimed": snapshot.total_claimed,
    }
    if snapshot.balance:
        log.info("channel %s recovered from the chain", lease.channel_id)
    update_channel(channels.books, lease.channel_id, **values)
    row = get_channel(channels.books, lease.channel_id)
    assert row is not None  # the lease inserted it
    return row


def adopt(channels: ChannelPayer, row: ChannelRow) -> Adopted:
    """The channel's last request never had its answer booked (its process died, or the answer was lost).

    Our lease on the row means that request's lease ran out. What the
    chain can tell is settled now: its deposit is posted if the token
    used the authorization, voided once unusable, and offered again when
    still valid; the row's balance is read from the escrow. Its charge
    is posted when the chain's ``totalClaimed`` proves it; otherwise it
    stays reserved for this request to re-present (the seller's answer
    then decides it).
    """
    books = channels.books
    cid = row.channel_id
    snapshot = channels.escrow.snapshot(channel_key(cid))
    resend, _ = resolve_deposits(channels, cid)
    orphan = row.inflight_id
    ceiling = open_charge(books, orphan) if orphan is not None else None
    booked = booked_charges(books, cid)
    if ceiling is not None and orphan is not None and snapshot.total_claimed > booked:
        # The seller claimed more than we booked: the dead request was charged.
        post_charge(books, orphan, cid, min(snapshot.total_claimed - booked, ceiling))
        ceiling = None
    update_channel(
        books,
        cid,
        balance=snapshot.balance,
        total_claimed=snapshot.total_claimed,
        charged=max(row.charged, snapshot.total_claimed),
        inflight_id=None,
    )
    fresh = get_channel(books, cid)
    assert fresh is not None
    log.info("channel %s: resolved a request whose process died", cid)
    if ceiling is None:
        return Adopted(fresh, None, 0, resend)
    return Adopted(fresh, orphan, ceiling, resend)


def resolve_deposits(
    channels: ChannelPayer, channel_id: str
) -> tuple[OpenDeposit | None, list[tuple[str, int]]]:
    """Post or void the channel's reserved deposits from the chain.

    Returns the first one still usable (unused, inside its window, signed
    with a derived salt) and what was done: ``(deposit_posted |
    deposit_voided, amount)``.
    """
    payer = channels.payer
    token = Stablecoin(payer.chain, payer.asset)
    now = payer.chain.timestamp()
    usable: OpenDeposit | None = None
    done: list[tuple[str, int]] = []
    for deposit in open_deposits(channels.books, channel_id):
        if deposit.nonce is None:
            continue  # made before deposits kept their nonce: reconciliation decides
        outcome = token.authorization_outcome(payer.address, deposit.nonce)
        if outcome.state == "used":
            post_deposit(
                channels.books,
                deposit.deposit_id,
                tx_hash=outcome.tx_hash,
                block_number=outcome.block_number,
                payer=payer.address,
                collector=channels.collector,
            )
            done.append(("deposit_posted", deposit.amount))
        elif outcome.state == "canceled" or (
            outcome.state == "unused"
            and deposit.valid_before is not None
            and deposit.valid_before <= now
        ):
            void_pending(channels.books, deposit.deposit_id)
            done.append(("deposit_voided", deposit.amount))
        elif (
            outcome.state == "unused"
            and usable is None
            and deposit.valid_after is not None
            and deposit.valid_before is not None
            and deposit.nonce == deposit_nonce_hex(channel_id, deposit.deposit_id)
        ):
            usable = deposit
    return usable, done


def settle_deposit_from_chain(channels: ChannelPayer, prepared: ChannelPrepared) -> int:
    """A refused request's deposit: posted if the chain shows it, voided if not. Returns the balance."""
    if prepared.deposit_id is None:
        return prepared.balance_before
    try:
        balance, _ = channels.escrow.channel(channel_key(prepared.channel_id))
    except ChainError:
        return prepared.balance_before  # left pending: its hold expires, reconciliation decides
    if balance >= prepared.balance_before + prepared.deposit_amount:
        tx = last_event_tx(channels, "Deposited", prepared.channel_id)
        post_deposit(
            channels.books,
            prepared.deposit_id,
            tx_hash=tx,
            block_number=None,
            payer=channels.payer.address,
            collector=channels.collector,
        )
        return balance
    void_pending(channels.books, prepared.deposit_id)
    return prepared.balance_before


def last_event_tx(channels: ChannelPayer, name: str, channel_id: str) -> str | None:
    """The transaction of the escrow's last ``name`` event on the channel, if any."""
    logs = channels.payer.chain.logs(
        channels.settlement, [ESCROW_EVENT_TOPICS[name], channel_key(channel_id)], 0
    )
    return logs[-1].tx_hash if logs else None
