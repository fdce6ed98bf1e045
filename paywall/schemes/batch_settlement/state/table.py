"""The ``paywall_channel`` table, a row read back as a :class:`ChannelRecord`, and the hot path's SQL.

One row per channel, on SQLite or PostgreSQL:

- the channel's immutable config (its id is that config's EIP-712 hash);
- a mirror of the chain: ``balance``, ``total_claimed``,
  ``withdraw_requested_at``, ``refund_nonce`` and when they were read;
- what the server has earned: ``charged`` (the spec's
  ``chargedCumulativeAmount``), and the highest voucher the payer signed
  (``signed_max`` with its ``signature``): the one to claim.

Amounts are ints of the token's atomic units, stored as decimal text (a
``uint128`` does not fit a BIGINT and must never pass through a float).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Final

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text

from farthing.invariant import invariant
from farthing.paywall.schemes.batch_settlement.contract import ChannelSnapshot
from farthing.paywall.schemes.batch_settlement.state.record import ChannelRecord
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig

__all__ = ["CHANNELS", "CHANNEL_METADATA", "Row", "hot_sql", "mirror_values", "record_from_row"]

CHANNEL_METADATA: Final = MetaData()

CHANNELS: Final = Table(
    "paywall_channel",
    CHANNEL_METADATA,
    Column("channel_id", String(66), primary_key=True),
    Column("network", String(32), nullable=False),
    Column("payer", String(42), nullable=False),
    Column("payer_authorizer", String(42), nullable=False),
    Column("receiver", String(42), nullable=False),
    Column("receiver_authorizer", String(42), nullable=False),
    Column("token", String(42), nullable=False),
    Column("withdraw_delay_s", BigInteger, nullable=False),
    Column("salt", String(66), nullable=False),
    # Mirrored from the chain (uint128 / uint256 as decimal text).
    Column("balance", String(40), nullable=False),
    Column("total_claimed", String(40), nullable=False),
    Column("withdraw_requested_at", BigInteger, nullable=False),
    Column("refund_nonce", String(78), nullable=False),
    Column("onchain_synced_at_ns", BigInteger, nullable=False),
    # Added later (paywall/schemes/batch_settlement/columns.py brings old tables up to date):
    # the pending withdrawal's amount (mirrored), and a cooperative refund in flight.
    Column("withdraw_amount", String(40), nullable=False, server_default="0"),
    Column("refunding", String(40), nullable=False, server_default="0"),
    # Charges held while their answers are produced (paywall/schemes/batch_settlement/holds.py).
    Column("held", String(40), nullable=False, server_default="0"),
    Column("held_until_ns", BigInteger, nullable=False, server_default="0"),
    Column("hold_epoch", BigInteger, nullable=False, server_default="0"),
    # Earned here.
    Column("charged", String(40), nullable=False),
    Column("signed_max", String(40), nullable=False),
    Column("signature", Text),  # NULL until a voucher is accepted (or after recovery)
    Column("last_request_at_ns", BigInteger),
    Column("updated_at_ns", BigInteger, nullable=False),
)

# A row as the hot path's driver-level SELECT returns it, in table order.
Row = namedtuple("Row", [column.name for column in CHANNELS.columns])  # type: ignore[misc]


def record_from_row(row: Any, config: ChannelConfig | None = None) -> ChannelRecord:
    """The record of a row read back (``config``, when the caller has it checked, is not parsed)."""
    if config is None:
        config = ChannelConfig(
            payer=row.payer,
            payer_authorizer=row.payer_authorizer,
            receiver=row.receiver,
            receiver_authorizer=row.receiver_authorizer,
            token=row.token,
            withdraw_delay_s=int(row.withdraw_delay_s),
            salt=row.salt,
        )
    record = ChannelRecord(
        channel_id=bytes.fromhex(row.channel_id[2:]),
        network=row.network,
        config=config,
        balance=int(row.balance),
        total_claimed=int(row.total_claimed),
        withdraw_requested_at=int(row.withdraw_requested_at),
        refund_nonce=int(row.refund_nonce),
        onchain_synced_at_ns=int(row.onchain_synced_at_ns),
        charged=int(row.charged),
        signed_max=int(row.signed_max),
        signature=None if row.signature is None else bytes.fromhex(row.signature[2:]),
        last_request_at_ns=row.last_request_at_ns,
        held=int(row.held),
        held_until_ns=int(row.held_until_ns),
        hold_epoch=int(row.hold_epoch),
        withdraw_amount=int(row.withdraw_amount),
        refunding=int(row.refunding),
    )
    # Read back, checked again: what money depends on must hold after storage too.
    invariant(record.charged <= record.signed_max, "charged never exceeds the signed ceiling")
    invariant(record.held >= 0, "a held total is never negative")
    return record


def mirror_values(snapshot: ChannelSnapshot, now: int) -> dict[str, Any]:
    """The row's columns that mirror the chain, as ``snapshot`` read them at ``now``."""
    return {
        "balance": str(snapshot.balance),
        "total_claimed": str(snapshot.total_claimed),
        "withdraw_requested_at": snapshot.withdraw_requested_at,
        "withdraw_amount": str(snapshot.withdraw_amount if snapshot.withdraw_requested_at else 0),
        "refund_nonce": str(snapshot.refund_nonce),
        "onchain_synced_at_ns": now,
        "updated_at_ns": now,
    }


def hot_sql(dialect: str) -> tuple[str, str]:
    """The hot path's SELECT and compare-and-swap UPDATE, in the driver's own paramstyle."""

    def p(name: str) -> str:
        return f":{name}" if dialect == "sqlite" else f"%({name})s"

    table = CHANNELS.name
    columns = ", ".join(column.name for column in CHANNELS.columns)
    select_sql = f"SELECT {columns} FROM {table} WHERE channel_id = {p('channel_id')}"
    swap_sql = (
        f"UPDATE {table} SET charged = {p('charged')}, signed_max = {p('signed_max')}, "
        f"signature = {p('signature')}, last_request_at_ns = {p('now')}, "
        f"held = {p('held')}, held_until_ns = {p('held_until_ns')}, "
        f"hold_epoch = {p('hold_epoch')}, "
        f"updated_at_ns = {p('now')} "
        f"WHERE channel_id = {p('channel_id')} AND charged = {p('was_charged')} "
        f"AND held = {p('was_held')} AND hold_epoch = {p('was_hold_epoch')} "
        f"AND balance = {p('was_balance')} AND total_claimed = {p('was_total_claimed')} "
        f"AND withdraw_requested_at = {p('was_withdraw_requested_at')} "
        f"AND onchain_synced_at_ns = {p('was_synced_at_ns')} "
        f"AND refunding = {p('was_refunding')} "
        # The rest of what a decision reads (mirrored with onchain_synced_at_ns,
        # or moved only with held or charged): named too, so that a decision on
        # a row this process wrote earlier, not read back, is as safe as on a read.
        f"AND held_until_ns = {p('was_held_until_ns')} "
        f"AND signed_max = {p('was_signed_max')} "
        f"AND withdraw_amount = {p('was_withdraw_amount')}"
    )
    return select_sql, swap_sql
