"""Leaving a channel: stop signing on it, start the timed withdrawal, finish it after the delay.

:func:`stop_channel` is what a failed client check does: the channel is never
signed on again and :func:`start_withdrawal` (also ``farthing agent channels
withdraw``) calls ``initiateWithdraw`` for everything unclaimed. After the
channel's withdraw delay, :func:`finish_withdrawal` calls ``finalizeWithdraw``,
books the money back as a ``CHANNEL_REFUND`` and closes the row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from eth_abi.abi import decode as abi_decode

from farthing.agents.channels.books import book_refund
from farthing.agents.channels.store import get_channel, update_channel
from farthing.faults import crash_point
from farthing.paywall.schemes.batch_settlement.client import channel_key, voucher_signer
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS
from farthing.wallet.errors import ChainError
from farthing.wallet.signer import TxSigner

if TYPE_CHECKING:
    from farthing.agents.channels.payer import ChannelPayer

__all__ = ["finish_withdrawal", "start_withdrawal", "stop_channel"]


def stop_channel(channels: ChannelPayer, channel_id: str, reason: str) -> str:
    """Never sign on this channel again and start the timed withdrawal; says what happened."""
    update_channel(channels.books, channel_id, status="stopped", reason=reason)
    started = start_withdrawal(channels, channel_id)
    return "withdrawal started" if started == "ok" else f"withdrawal not started: {started}"


def start_withdrawal(channels: ChannelPayer, channel_id: str) -> str:
    """``initiateWithdraw`` for everything unclaimed: ``"ok"`` or a snake_case reason."""
    row = get_channel(channels.books, channel_id)
    if row is None:
        return "channel_not_found"
    try:
        balance, claimed = channels.escrow.channel(channel_key(channel_id))
    except ChainError:
        return "chain_unavailable"
    amount = balance - claimed
    if amount <= 0:
        return "nothing_to_withdraw"
    result = channels.escrow.initiate_withdraw(row.config, amount, sender=_sender(channels))
    if not result.ok:
        return result.reason or "transaction_failed"
    crash_point("agent.channel_after_withdraw_sent")
    after = channels.payer.chain.timestamp() + row.config.withdraw_delay_s
    update_channel(
        channels.books,
        channel_id,
        status="withdrawing",
        withdraw_after=after,
        reason=row.reason or "withdraw",
    )
    return "ok"


def finish_withdrawal(channels: ChannelPayer, channel_id: str) -> tuple[str, int]:
    """``finalizeWithdraw`` after the delay: (``"ok"`` or a reason, the amount returned)."""
    books = channels.books
    row = get_channel(books, channel_id)
    if row is None:
        return "channel_not_found", 0
    result = channels.escrow.finalize_withdraw(row.config, sender=_sender(channels))
    if not result.ok or result.tx_hash is None:
        return result.reason or "transaction_failed", 0
    crash_point("agent.channel_after_finalize_sent")
    amount = sum(
        int(abi_decode(["uint128"], entry.data)[0])
        for entry in result.logs
        if entry.topics and entry.topics[0] == ESCROW_EVENT_TOPICS["WithdrawFinalized"]
    )
    if amount:
        book_refund(
            books,
            channel_id=channel_id,
            amount=amount,
            tx_hash=result.tx_hash,
            block_number=result.block_number,
            escrow=channels.settlement,
            wallet=channels.payer.address,
        )
    balance, claimed = channels.escrow.channel(channel_key(channel_id))
    update_channel(
        books,
        channel_id,
        status="closed",
        balance=balance,
        total_claimed=claimed,
        charged=max(row.charged, claimed),
        withdraw_after=None,
    )
    return "ok", amount


def _sender(channels: ChannelPayer) -> TxSigner:
    """Who sends the payer's escrow calls: its key, or a smart account's owner key.

    The escrow lets the channel's payerAuthorizer (a smart account's owner,
    ``voucher_signer``) initiate and finalize the withdrawal; the funds go
    back to the payer all the same. That key pays the gas.
    """
    return cast(TxSigner, voucher_signer(channels.payer.signer))
