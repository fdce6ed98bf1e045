"""The ledger's tables, as SQLModel classes.

The ORM classes are for reading and for schema definition; the write path
builds rows with SQLAlchemy Core from the same ``__table__`` objects because
it processes whole batches at once (see ``repository.py``).

Every table name starts with ``ledger_`` so the books can share a database
with the rest of Farthing. Transfers and audit entries are immutable: the
migration installs triggers that refuse UPDATE and DELETE on them, and the ORM
refuses to flush a change to one (``_refuse_change`` below). In fact the ORM
classes are read-only for every ledger table: balances, budgets and the audit
chain change only through ``repository.py``, under the write lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text, event
from sqlalchemy.orm import Mapper
from sqlmodel import Field, SQLModel

from farthing.errors import InvariantError
from farthing.ledger.columns import HexUInt

__all__ = [
    "Account",
    "Asset",
    "AuditEntry",
    "AuditHead",
    "Budget",
    "BudgetUsage",
    "PendingTransfer",
    "Transfer",
    "table_of",
]


def _id(*, primary_key: bool = False, nullable: bool = False, fk: str | None = None) -> Any:
    args: list[Any] = [ForeignKey(fk)] if fk else []
    return Field(sa_column=Column(HexUInt(128), *args, primary_key=primary_key, nullable=nullable))


def _big(*, nullable: bool = False, default: int | None = 0) -> Any:
    return Field(default=default, sa_column=Column(BigInteger, nullable=nullable))


def _text(length: int | None = None) -> Any:
    return Field(default=None, sa_column=Column(String(length) if length else Text, nullable=True))


class Asset(SQLModel, table=True):
    """A token the books accept, and the ledger (currency) it settles in."""

    __tablename__ = "ledger_asset"

    id: str = Field(sa_column=Column(String(200), primary_key=True))  # CAIP-19
    ledger: int = _big()
    decimals: int = Field(sa_column=Column(Integer, nullable=False))
    symbol: str = Field(sa_column=Column(String(32), nullable=False))
    timestamp_ns: int = _big()


class Account(SQLModel, table=True):
    """TigerBeetle's account: four balances that only the ledger changes."""

    __tablename__ = "ledger_account"

    id: int = _id(primary_key=True)
    ledger: int = _big()
    code: int = Field(sa_column=Column(Integer, nullable=False))
    flags: int = Field(sa_column=Column(Integer, nullable=False))
    debits_pending: int = _big()
    debits_posted: int = _big()
    credits_pending: int = _big()
    credits_posted: int = _big()
    user_data_128: int = Field(sa_column=Column(HexUInt(128), nullable=False))
    user_data_64: int = Field(sa_column=Column(HexUInt(64), nullable=False))
    user_data_32: int = _big()
    label: str | None = _text(256)
    timestamp_ns: int = _big()


class Transfer(SQLModel, table=True):
    """TigerBeetle's transfer plus the payment facts reconciliation needs."""

    __tablename__ = "ledger_transfer"
    __table_args__ = (
        Index("ix_ledger_transfer_debit", "debit_account_id", "timestamp_ns"),
        Index("ix_ledger_transfer_credit", "credit_account_id", "timestamp_ns"),
        Index("ix_ledger_transfer_timestamp", "timestamp_ns"),
        Index("ix_ledger_transfer_tx_hash", "tx_hash"),
        # At most one transfer resolves a pending one: a second post is
        # impossible even if the application's checks were bypassed.
        Index("ux_ledger_transfer_pending_id", "pending_id", unique=True),
    )

    id: int = _id(primary_key=True)
    debit_account_id: int = _id(fk="ledger_account.id")
    credit_account_id: int = _id(fk="ledger_account.id")
    amount: int = _big()
    pending_id: int | None = _id(nullable=True, fk="ledger_transfer.id")
    timeout_s: int = _big()
    expires_at_ns: int | None = _big(nullable=True, default=None)
    ledger: int = _big()
    code: int = Field(sa_column=Column(Integer, nullable=False))
    flags: int = Field(sa_column=Column(Integer, nullable=False))
    timestamp_ns: int = _big()
    user_data_128: int = Field(sa_column=Column(HexUInt(128), nullable=False))
    user_data_64: int = Field(sa_column=Column(HexUInt(64), nullable=False))
    user_data_32: int = _big()
    # Payment facts; see PaymentDetails.
    network: str | None = _text(64)
    token_address: str | None = _text(42)
    authorization_nonce: str | None = _text(66)
    tx_hash: str | None = _text(66)
    block_number: int | None = _big(nullable=True, default=None)
    payer_address: str | None = _text(42)
    payee_address: str | None = _text(42)
    resource: str | None = _text()
    task_id: str | None = _text()
    purpose: str | None = _text()
    fiat_rate: str | None = _text(64)
    fiat_currency: str | None = _text(16)
    valid_after: int | None = _big(nullable=True, default=None)
    valid_before: int | None = _big(nullable=True, default=None)


class PendingTransfer(SQLModel, table=True):
    """Pending transfers not yet posted, voided or expired.

    Derived state, like the balances: a row is added with the pending transfer
    and removed with its resolution, so the expiry sweep and "open
    reservations" never scan the history.
    """

    __tablename__ = "ledger_pending"
    __table_args__ = (Index("ix_ledger_pending_expires", "expires_at_ns"),)

    transfer_id: int = _id(primary_key=True, fk="ledger_transfer.id")
    expires_at_ns: int | None = _big(nullable=True, default=None)


class Budget(SQLModel, table=True):
    """An agent's spend policy on one budget account.

    The total budget is the account itself ("debits must not exceed credits",
    funded by transfers); the other limits are checked against
    ``BudgetUsage`` in the same database transaction as the reservation.
    """

    __tablename__ = "ledger_budget"

    account_id: int = _id(primary_key=True, fk="ledger_account.id")
    agent_id: str = Field(sa_column=Column(String(256), nullable=False, index=True))
    payment_cap: int | None = _big(nullable=True, default=None)
    daily_limit: int | None = _big(nullable=True, default=None)
    payee_daily_cap: int | None = _big(nullable=True, default=None)
    asset_allowlist: str | None = _text()  # JSON list of CAIP-19 ids; NULL allows any
    timestamp_ns: int = _big()


class BudgetUsage(SQLModel, table=True):
    """Reserved plus posted spend of a budget account, per payee and per hour.

    ``payee_account_id`` 0 holds the total across payees. The daily limit and
    the per-payee cap sum the buckets of the last 24 whole hours plus the
    current one, so a window is never shorter than 24 hours.
    """

    __tablename__ = "ledger_budget_usage"
    # The dashboard sums every budget's buckets of the last day (migration 0002).
    __table_args__ = (Index("ix_ledger_budget_usage_hour", "hour", "payee_account_id"),)

    account_id: int = _id(primary_key=True, fk="ledger_account.id")
    payee_account_id: int = _id(primary_key=True)
    hour: int = Field(sa_column=Column(BigInteger, primary_key=True))
    amount: int = _big()


class AuditEntry(SQLModel, table=True):
    """One ledger event in the hash chain; ``hash`` commits to ``prev_hash``."""

    __tablename__ = "ledger_audit_entry"

    sequence: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    timestamp_ns: int = _big()
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    subject: str = Field(sa_column=Column(String(200), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class AuditHead(SQLModel, table=True):
    """The single row naming the last audit entry; writers lock it to serialise."""

    __tablename__ = "ledger_audit_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    sequence: int = _big()
    hash: str = Field(sa_column=Column(String(64), nullable=False))


def _refuse_change(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    raise InvariantError(
        f"{type(target).__name__} rows are written only by farthing.ledger.repository; "
        "to correct a transfer, create a correcting transfer"
    )


# Every ledger table's model: each refuses ORM changes, and LEDGER_TABLES lists their tables.
_LEDGER_MODELS: tuple[type[SQLModel], ...] = (
    Asset,
    Account,
    Transfer,
    PendingTransfer,
    Budget,
    BudgetUsage,
    AuditEntry,
    AuditHead,
)

for _model in _LEDGER_MODELS:
    for _action in ("before_insert", "before_update", "before_delete"):
        event.listen(_model, _action, _refuse_change)


def table_of(model: type[SQLModel]) -> Table:
    """The Core ``Table`` behind a SQLModel class, for the batch write path."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


LEDGER_TABLES: tuple[Table, ...] = tuple(table_of(model) for model in _LEDGER_MODELS)
