"""The ``jobs_job`` table: one row per job, next to the agent's books in the same database.

The table is created on first use (:func:`ensure_tables`), as the agents'
tables are, inside a ledger write session so two processes starting at once
do not race. Amounts are ints (``BIGINT``): the price in minor units of the
worker's currency, and everything held, captured and refunded in the asset's
atomic units. The rate is decimal text. Ledger ids (128-bit) are hex text.

Every change to a row goes through a conditional UPDATE on ``version``
(``farthing.jobs.store``), in the same database transaction as the ledger
transfers it books, so two processes can never both move one job.
"""

from __future__ import annotations

import weakref

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, String, Text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Field, SQLModel

from farthing.ledger.database import LedgerDatabase

__all__ = ["Job", "ensure_tables"]


def _big(*, nullable: bool = False) -> object:
    return Field(default=None if nullable else 0, sa_column=Column(BigInteger, nullable=nullable))


def _text(length: int | None = None, *, nullable: bool = True) -> object:
    kind = String(length) if length else Text
    return Field(default=None, sa_column=Column(kind, nullable=nullable))


class Job(SQLModel, table=True):
    """A job an agent posted: its terms, its worker, its delivery, review and escrow facts."""

    __tablename__ = "jobs_job"
    __table_args__ = (Index("ix_jobs_job_agent_state", "agent_id", "state", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True)
    )
    agent_id: str = Field(sa_column=Column(String(256), nullable=False))
    title: str = Field(sa_column=Column(String(200), nullable=False))
    specification: str = Field(sa_column=Column(Text, nullable=False))
    criteria: str = Field(sa_column=Column(Text, nullable=False))
    # The price in the worker's currency (minor units) and its conversion.
    price_amount: int = _big()  # type: ignore[assignment]
    currency: str = Field(sa_column=Column(String(8), nullable=False))
    currency_decimals: int = Field(sa_column=Column(Integer, nullable=False))
    rate: str = Field(sa_column=Column(String(64), nullable=False))  # asset units per currency unit
    amount: int = _big()  # type: ignore[assignment]  # the hold, in the asset's atomic units
    network: str = Field(sa_column=Column(String(64), nullable=False))
    token: str = Field(sa_column=Column(String(42), nullable=False))
    deadline: int = _big()  # type: ignore[assignment]  # unix seconds, the chain's clock
    state: str = Field(sa_column=Column(String(24), nullable=False))
    version: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    worker: str | None = _text(42)  # type: ignore[assignment]
    delivery_kind: str | None = _text(8)  # type: ignore[assignment]  # text | file | url
    delivery: str | None = _text()  # type: ignore[assignment]
    review: str | None = _text()  # type: ignore[assignment]  # the verdict as JSON
    approval_id: int | None = _big(nullable=True)  # type: ignore[assignment]
    # The escrow: the payment's info (the spec's wire form) and its hash.
    payment_info: str | None = _text()  # type: ignore[assignment]
    payment_hash: str | None = _text(66)  # type: ignore[assignment]
    hold_transfer_id: str | None = _text(32)  # type: ignore[assignment]  # the open hold, hex
    hold_seq: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    refund_seq: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    held: int = _big()  # type: ignore[assignment]
    held_unbooked: int = _big()  # type: ignore[assignment]  # held on chain, not reserved in the books
    captured: int = _big()  # type: ignore[assignment]
    refunded: int = _big()  # type: ignore[assignment]
    authorize_tx: str | None = _text(66)  # type: ignore[assignment]
    # Where the payment's history starts on chain: reconciliation reads from here.
    authorize_block: int | None = _big(nullable=True)  # type: ignore[assignment]
    capture_txs: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    void_tx: str | None = _text(66)  # type: ignore[assignment]
    refund_txs: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    reclaim_tx: str | None = _text(66)  # type: ignore[assignment]
    note: str | None = _text()  # type: ignore[assignment]
    created_ns: int = _big()  # type: ignore[assignment]
    updated_ns: int = _big()  # type: ignore[assignment]


_ENSURED: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure_tables(database: LedgerDatabase) -> None:
    """Create ``jobs_job`` if it is missing (cheap after the first call)."""
    if database.engine in _ENSURED:
        return
    table = Job.__table__  # type: ignore[attr-defined]
    for attempt in range(2):
        try:
            with database.write() as session:
                table.create(session.connection(), checkfirst=True)
            break
        except DBAPIError:
            # PostgreSQL: another process created it between our check and ours.
            if attempt == 1:
                raise
    _ENSURED.add(database.engine)
