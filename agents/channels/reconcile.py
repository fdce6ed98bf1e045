"""The agent's channels against the chain: what a dead process left, and what the books miss.

:func:`resolve_channels` settles from the escrow and the token what a process
that died mid-request left on the agent's channels (deposits, refunds,
withdrawals, charges in flight). :func:`reconcile_channels` matches the
escrow's events to the channel books and reports each disagreement as a
:class:`AgentChannelBreak`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_abi.abi import decode as abi_decode

from farthing.agents.channels.books import (
    book_refund,
    booked_charges,
    booked_sums,
    open_charge,
    post_charge,
    void_pending,
)
from farthing.agents.channels.payer import ChannelPayer
from farthing.agents.channels.recovery import resolve_deposits
from farthing.agents.channels.store import list_channels, update_channel
from farthing.paywall.schemes.batch_settlement.client import channel_key
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS

if TYPE_CHECKING:
    from farthing.agents.payer import Payer

__all__ = ["AgentChannelBreak", "ChannelResolution", "reconcile_channels", "resolve_channels"]


@dataclass(frozen=True, slots=True)
class AgentChannelBreak:
    """A disagreement between the escrow's events and the agent's books, for one channel."""

    channel_id: str
    kind: str  # deposits_differ | returns_differ | claimed_above_charged
    chain_amount: int
    books_amount: int


@dataclass(frozen=True, slots=True)
class ChannelResolution:
    """What :func:`resolve_channels` did on one channel (``action``: a short snake_case word)."""

    channel_id: str
    action: str  # deposit_posted | deposit_voided | refund_booked | withdrawing | closed | charge_posted | charge_voided | charge_unconfirmed
    amount: int = 0


def resolve_channels(payer: Payer, *, from_block: int = 0) -> list[ChannelResolution]:
    """Settle from the chain what a dead process left on the agent's channels (not leased now).

    * a reserved deposit: posted when the token used its authorization,
      voided when it was cancelled or its window closed unused (left while
      it could still land);
    * a ``Refunded`` or ``WithdrawFinalized`` event the books lack (the
      process died after the transaction): booked, with the id ``finalize``
      would have used, so it is never booked twice;
    * a timed withdrawal pending on chain: the channel is marked
      ``withdrawing`` (no voucher is signed on it again); finalized: ``closed``;
    * a charge left in flight: posted when the chain's ``totalClaimed``
      proves it, voided once the channel is closed with nothing more
      claimable; otherwise ``charge_unconfirmed`` (only the seller knows:
      the next request on the channel settles it).

    The row's balance and ``totalClaimed`` are refreshed from the escrow.
    """
    channels = ChannelPayer(payer)
    books = payer.books
    out: list[ChannelResolution] = []
    now_ns = time.time_ns()
    for row in list_channels(books):
        if row.lease_until_ns > now_ns:
            continue  # a live request holds it
        cid = row.channel_id
        _, settled = resolve_deposits(channels, cid)
        out.extend(ChannelResolution(cid, action, amount) for action, amount in settled)
        for name in ("Refunded", "WithdrawFinalized"):
            for entry in payer.chain.logs(
                channels.settlement, [ESCROW_EVENT_TOPICS[name], channel_key(cid)], from_block
            ):
                amount = int(abi_decode(["uint128"], entry.data[:32])[0])
                if amount and entry.tx_hash:
                    result = book_refund(
                        books,
                        channel_id=cid,
                        amount=amount,
                        tx_hash=entry.tx_hash,
                        block_number=entry.block_number,
                        escrow=channels.settlement,
                        wallet=payer.address,
                    )
                    if result == "ok":
                        out.append(ChannelResolution(cid, "refund_booked", amount))
        snapshot = channels.escrow.snapshot(channel_key(cid))
        values: dict[str, Any] = {
            "balance": snapshot.balance,
            "total_claimed": snapshot.total_claimed,
            "charged": max(row.charged, snapshot.total_claimed),
        }
        if snapshot.withdraw_requested_at and row.status in ("open", "stopped"):
            values.update(
                status="withdrawing",
                withdraw_after=snapshot.withdraw_requested_at + row.config.withdraw_delay_s,
                reason=row.reason or "withdraw",
            )
            out.append(ChannelResolution(cid, "withdrawing", snapshot.withdraw_amount))
        finalized = payer.chain.logs(
            channels.settlement,
            [ESCROW_EVENT_TOPICS["WithdrawFinalized"], channel_key(cid)],
            from_block,
        )
        if not snapshot.withdraw_requested_at and row.status == "withdrawing" and finalized:
            values.update(status="closed", withdraw_after=None)
            out.append(ChannelResolution(cid, "closed"))
        closed = values.get("status", row.status) == "closed"
        if row.inflight_id is not None:
            ceiling = open_charge(books, row.inflight_id)
            booked = booked_charges(books, cid)
            if ceiling is None:
                values["inflight_id"] = None
            elif snapshot.total_claimed > booked:
                amount = min(snapshot.total_claimed - booked, ceiling)
                post_charge(books, row.inflight_id, cid, amount)
                values["inflight_id"] = None
                out.append(ChannelResolution(cid, "charge_posted", amount))
            elif closed and snapshot.balance <= snapshot.total_claimed:
                void_pending(books, row.inflight_id)
                values["inflight_id"] = None
                out.append(ChannelResolution(cid, "charge_voided", ceiling))
            else:
                out.append(ChannelResolution(cid, "charge_unconfirmed", ceiling))
        update_channel(books, cid, **values)
    return out


def reconcile_channels(
    payer: Payer, *, from_block: int = 0, resolve: bool = False
) -> list[AgentChannelBreak]:
    """Match the escrow's ``Deposited``, ``Refunded``, ``WithdrawFinalized`` and ``Claimed`` events to the books.

    Deposits must equal the posted ``CHANNEL_DEPOSIT`` transfers, money back
    the ``CHANNEL_REFUND`` ones, and the chain's ``totalClaimed`` must not be
    above what the books charged (the seller may claim less, never more).
    With ``resolve``, :func:`resolve_channels` runs first.
    """
    if resolve:
        resolve_channels(payer, from_block=from_block)
    channels = ChannelPayer(payer)
    breaks: list[AgentChannelBreak] = []
    for row in list_channels(payer.books):
        cid = channel_key(row.channel_id)

        def total(name: str, cid: bytes = cid) -> int:
            logs = payer.chain.logs(
                channels.settlement, [ESCROW_EVENT_TOPICS[name], cid], from_block
            )
            return sum(int(abi_decode(["uint128"], entry.data[:32])[0]) for entry in logs)

        deposited, returned, charged = booked_sums(payer.books, row.channel_id)
        on_chain = total("Deposited")
        back = total("Refunded") + total("WithdrawFinalized")
        _, claimed = channels.escrow.channel(cid)
        if on_chain != deposited:
            breaks.append(AgentChannelBreak(row.channel_id, "deposits_differ", on_chain, deposited))
        if back != returned:
            breaks.append(AgentChannelBreak(row.channel_id, "returns_differ", back, returned))
        if claimed > charged:
            breaks.append(
                AgentChannelBreak(row.channel_id, "claimed_above_charged", claimed, charged)
            )
    return breaks
