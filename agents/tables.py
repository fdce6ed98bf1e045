"""The agents' own tables, next to the ledger's in the same database.

The ledger already holds the money limits (``ledger_budget``: payment cap,
daily limit, per-payee daily cap, asset allowlist) and checks them in the
reservation's database transaction. What it lacks lives here:

* ``agent_policy``: the total budget, host and payee allow/deny lists, and the
  approval threshold, one row per agent;
* ``agent_task``: each task's budget, so every process working on a task
  enforces the same one;
* ``agent_approval``: payments waiting for a person (``farthing agent approvals``);
* ``agent_cursor``: how far deposits to the agent's wallet have been booked;
* ``agent_channel``: each x402 ``batch-settlement`` channel the agent pays
  through: its config, what the agent believes is deposited, charged and
  signed, its status, and a lease so one process at a time signs on it
  (``farthing.agents.channels.store``).

The tables are **created on first use** (``ensure_tables``), like the
paywall's payment store, not by Alembic: they are few and new. Creation runs
inside a ledger write session, which on SQLite holds the write lock, so two
processes starting at once do not race. Every name starts with ``agent_``.
When these tables first change shape they move to Alembic migrations with
their own version table (``agent_alembic_version``).
"""

from __future__ import annotations

import weakref
from typing import Final

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.exc import DBAPIError

from farthing.ledger.database import LedgerDatabase

__all__ = [
    "AGENT_TABLES",
    "agent_approval",
    "agent_channel",
    "agent_cursor",
    "agent_policy",
    "agent_task",
    "ensure_tables",
]

metadata = MetaData()

agent_policy = Table(
    "agent_policy",
    metadata,
    Column("agent_id", String(256), primary_key=True),
    Column("total_budget", BigInteger, nullable=True),  # lifetime spend cap; NULL: none
    Column("approval_above", BigInteger, nullable=True),  # NULL: never ask
    Column("approval_timeout_s", Integer, nullable=False),
    Column("hosts_allowed", Text, nullable=True),  # JSON list; NULL allows any host
    Column("hosts_denied", Text, nullable=False),
    Column("payees_allowed", Text, nullable=True),  # JSON list of lowercase addresses
    Column("payees_denied", Text, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

# The policy's channel bounds, kept apart so databases made before them need no migration.
agent_channel_policy = Table(
    "agent_channel_policy",
    metadata,
    Column("agent_id", String(256), primary_key=True),
    Column("withdraw_delay_max_s", BigInteger, nullable=False),  # no row: the default
)

agent_task = Table(
    "agent_task",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("agent_id", String(256), nullable=False),
    Column("budget", BigInteger, nullable=False),
    Column("text", Text, nullable=True),
    Column("created_ns", BigInteger, nullable=False),
)

agent_approval = Table(
    "agent_approval",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(256), nullable=False),
    Column("task_id", String(128), nullable=True),
    Column("purpose", Text, nullable=True),
    Column("resource", Text, nullable=False),
    Column("pay_to", String(42), nullable=False),
    Column("network", String(64), nullable=False),
    Column("token", String(42), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("decimals", Integer, nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | denied | expired
    Column("note", Text, nullable=True),  # why it was denied, in the decider's words
    Column("created_ns", BigInteger, nullable=False),
    Column("decided_ns", BigInteger, nullable=True),
    Index("ix_agent_approval_status", "status", "id"),
)

agent_cursor = Table(
    "agent_cursor",
    metadata,
    Column("agent_id", String(256), primary_key=True),
    Column("network", String(64), primary_key=True),
    Column("token", String(42), primary_key=True),
    Column("next_block", BigInteger, nullable=False),
)

agent_channel = Table(
    "agent_channel",
    metadata,
    Column("channel_id", String(66), primary_key=True),  # 0x + 64 hex, lowercase
    Column("agent_id", String(256), nullable=False),
    Column("network", String(64), nullable=False),
    Column("escrow", String(42), nullable=False),
    Column("config", Text, nullable=False),  # the spec's channelConfig JSON
    Column("receiver", String(42), nullable=False),  # lowercase, for lookups
    Column("slot", Integer, nullable=False),  # the salt is derived from it
    Column("resource", Text, nullable=True),  # the last URL paid through it (for refunds)
    Column("offer", Text, nullable=True),  # that URL's accepts entry, echoed by a refund
    # Amounts in atomic units (BIGINT, like the ledger's): what the agent believes.
    Column("balance", BigInteger, nullable=False),  # deposited minus refunded or withdrawn
    Column("charged", BigInteger, nullable=False),  # chargedCumulativeAmount
    Column("signed_max", BigInteger, nullable=False),  # highest voucher ever signed
    Column("total_claimed", BigInteger, nullable=False),  # as last read from the chain
    Column("status", String(16), nullable=False),  # open | stopped | withdrawing | closed
    Column("reason", Text, nullable=True),  # why it stopped
    Column("withdraw_after", BigInteger, nullable=True),  # unix s: finalizeWithdraw from then
    Column("inflight_id", String(32), nullable=True),  # the charge or deposit awaiting an answer
    Column("lease_until_ns", BigInteger, nullable=False),  # 0: free
    Column("lease_owner", String(64), nullable=True),
    Column("updated_ns", BigInteger, nullable=False),
    Index("ix_agent_channel_receiver", "agent_id", "receiver", "slot"),
)

AGENT_TABLES: Final = (agent_policy, agent_task, agent_approval, agent_cursor, agent_channel)

# Engines whose tables are known to exist; weak, so a disposed database is forgotten.
_ENSURED: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure_tables(database: LedgerDatabase) -> None:
    """Create the agents' tables if they are missing (cheap after the first call)."""
    if database.engine in _ENSURED:
        return
    for attempt in range(2):
        try:
            with database.write() as session:
                metadata.create_all(session.connection(), checkfirst=True)
            break
        except DBAPIError:
            # PostgreSQL: another process created them between our check and
            # our CREATE. The second pass finds them.
            if attempt == 1:
                raise
    _ENSURED.add(database.engine)
