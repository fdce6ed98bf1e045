"""The agent page's channels: each batch-settlement channel with its deposits, charges and escrow.

The figures come from the same functions the agents package uses, so the
page and ``farthing agent channels list`` cannot disagree:
``farthing.agents.channels.store.list_channels`` for the channel records
(table ``agent_channel``: payee, status, withdrawal), and
``farthing.agents.channels.books.booked_sums`` and ``escrow_balance`` for the
money as the books hold it (posted only; a deposit still pending is not in
escrow yet). The deposit and refund transactions are the posted
``CHANNEL_DEPOSIT`` and ``CHANNEL_REFUND`` transfers, read through the
transfer table's debit index (a deposit debits the agent's one channel-wallet
account, a refund a channel's escrow account), bounded by ``limit``.

An agent without channels costs one indexed query on ``agent_channel``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from farthing.agents.books import AgentBooks
from farthing.agents.channels.books import (
    ChannelTransferCode,
    booked_sums,
    escrow_account_id,
    escrow_balance,
    wallet_account_id,
)
from farthing.agents.channels.store import list_channels
from farthing.dashboard.listing import Listing, Money
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.flags import NOT_POSTED_FLAGS
from farthing.ledger.tables import Asset as LedgerAssetRow
from farthing.ledger.tables import Transfer, table_of
from farthing.wallet.money import Asset

__all__ = ["ChannelTables", "channel_tables"]

_transfers = table_of(Transfer)
_assets = table_of(LedgerAssetRow)
_CHANNEL_COLUMNS = (
    "payee", "channel", "deposited", "charged", "returned", "in_escrow", "state", "reason",
    "withdraw_requested", "withdraw_after", "channel_id", "deposited_atomic", "charged_atomic",
    "returned_atomic", "in_escrow_atomic",
)  # fmt: skip
_CHANNEL_HIDDEN = (
    "channel_id", "deposited_atomic", "charged_atomic", "returned_atomic", "in_escrow_atomic",
)  # fmt: skip
_TX_COLUMNS = ("channel", "kind", "amount", "transaction", "booked", "channel_id", "amount_atomic")
_TX_HIDDEN = ("channel_id", "amount_atomic")


@dataclass(frozen=True, slots=True)
class ChannelTables:
    channels: Listing
    transactions: Listing
    in_escrow_total: int  # atomic units, every channel of the agent


def _short(channel_id: str) -> str:
    return f"{channel_id[:10]}…{channel_id[-4:]}"


def _utc(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _books_for(database: LedgerDatabase, agent_id: str, ledger: int) -> AgentBooks | None:
    """Read-only books for the query functions: only the database, agent id and ledger are used."""
    with database.read() as session:
        row = session.execute(
            select(_assets.c.id, _assets.c.decimals, _assets.c.symbol)
            .where(_assets.c.ledger == ledger)
            .order_by(_assets.c.id)
        ).first()
    if row is None or "/erc20:" not in row.id:
        return None
    network, address = row.id.split("/erc20:", 1)
    try:
        # The EIP-712 name and version are not stored in the books and
        # nothing here signs, so they stay empty.
        asset = Asset(network, address, int(row.decimals), "", "", row.symbol)
    except ValueError:
        return None
    return AgentBooks(database, agent_id=agent_id, asset=asset, ledger=ledger)


def _empty() -> ChannelTables:
    return ChannelTables(
        Listing("channels", "Channels and their deposits", _CHANNEL_COLUMNS, [], _CHANNEL_HIDDEN),
        Listing(
            "channel_transactions",
            "Channel deposits and refunds on chain",
            _TX_COLUMNS,
            [],
            _TX_HIDDEN,
        ),
        0,
    )


def channel_tables(
    database: LedgerDatabase, *, agent_id: str, ledger: int, money: Money, limit: int
) -> ChannelTables:
    """The agent's channels and their on-chain deposits and refunds, newest transactions first."""
    books = _books_for(database, agent_id, ledger)
    if books is None:
        return _empty()
    channels = list_channels(books)[:limit]
    if not channels:
        return _empty()
    m = money
    rows: list[dict[str, str]] = []
    escrow_of: dict[int, str] = {}
    total = 0
    for c in channels:
        deposited, returned, charged = booked_sums(books, c.channel_id)
        left = escrow_balance(books, c.channel_id)
        total += left
        escrow_of[escrow_account_id(books, c.channel_id)] = c.channel_id
        requested = (
            None if c.withdraw_after is None else c.withdraw_after - c.config.withdraw_delay_s
        )
        rows.append(
            {
                "payee": c.config.receiver.lower(), "channel": _short(c.channel_id),
                "deposited": m.format(deposited), "charged": m.format(charged),
                "returned": m.format(returned), "in_escrow": m.format(left),
                "state": c.status, "reason": c.reason or "-",
                "withdraw_requested": _utc(requested), "withdraw_after": _utc(c.withdraw_after),
                "channel_id": c.channel_id, "deposited_atomic": str(deposited),
                "charged_atomic": str(charged), "returned_atomic": str(returned),
                "in_escrow_atomic": str(left),
            }
        )  # fmt: skip
    t = _transfers.c
    posted = t.flags.op("&")(int(NOT_POSTED_FLAGS)) == 0
    deposit = (
        (t.debit_account_id == wallet_account_id(books))
        & (t.code == int(ChannelTransferCode.CHANNEL_DEPOSIT))
        & posted
    )
    refund = (
        t.debit_account_id.in_(list(escrow_of))
        & (t.code == int(ChannelTransferCode.CHANNEL_REFUND))
        & posted
    )
    tx_rows: list[dict[str, str]] = []
    with database.read() as session:
        found = session.execute(
            select(
                t.code, t.debit_account_id, t.credit_account_id, t.amount, t.tx_hash,
                t.timestamp_ns,
            )
            .where(deposit | refund)
            .order_by(t.timestamp_ns.desc())
            .limit(limit)
        ).all()  # fmt: skip
    for r in found:
        is_deposit = r.code == ChannelTransferCode.CHANNEL_DEPOSIT
        cid = escrow_of.get(r.credit_account_id if is_deposit else r.debit_account_id)
        if cid is None:  # a channel past the page's limit
            continue
        tx_rows.append(
            {
                "channel": _short(cid), "kind": "deposit" if is_deposit else "refund",
                "amount": m.format(r.amount), "transaction": r.tx_hash or "-",
                "booked": _utc(r.timestamp_ns // 1_000_000_000), "channel_id": cid,
                "amount_atomic": str(r.amount),
            }
        )  # fmt: skip
    return ChannelTables(
        Listing("channels", "Channels and their deposits", _CHANNEL_COLUMNS, rows, _CHANNEL_HIDDEN),
        Listing(
            "channel_transactions",
            "Channel deposits and refunds on chain",
            _TX_COLUMNS,
            tx_rows,
            _TX_HIDDEN,
        ),
        total,
    )
