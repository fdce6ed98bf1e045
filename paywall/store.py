"""The paywall's payment records: one row per authorization, claimed atomically.

Every paid request claims its authorization's key ``(network, token, payer,
nonce)`` here *before* the handler runs and before anything is settled. The
claim is a single ``INSERT`` against the primary key, so of any number of
requests carrying the same payment, in one process or many sharing the
database (a SQLite file, or PostgreSQL), exactly one wins; every other one is
told ``nonce_already_used``.

A row moves through these states (the owner token of the winning request
guards every move, so a late request can never release someone else's claim)::

    claimed ──► settled            the transfer is on-chain; content was sent
       │  ├───► released           the handler failed; the payer may try again
       │  ├───► failed             settlement was refused (reason recorded)
       │  └───► pending            the outcome is unknown (a timeout): resolved
       │                           from the chain later, never guessed
    pending ──► settled | expired  (see ``farthing.paywall.resolve``)

The caller never holds a database transaction open across network calls:
each method here is one short statement. Methods are synchronous; the
middleware runs them in a worker thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from farthing.paywall.errors import PaymentStoreError, PaywallConfigError

__all__ = [
    "PAYMENTS",
    "ClaimOutcome",
    "PaymentKey",
    "PaymentRecord",
    "PaymentState",
    "PaymentStore",
]

_METADATA: Final = MetaData()

PAYMENTS: Final = Table(
    "paywall_payment",
    _METADATA,
    Column("network", String(32), primary_key=True),
    Column("token", String(42), primary_key=True),
    Column("payer", String(42), primary_key=True),
    Column("nonce", String(66), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("owner", String(32), nullable=False),
    Column("pay_to", String(42), nullable=False),
    Column("amount", String(78), nullable=False),  # uint256 as decimal text
    Column("route", String(512), nullable=False),
    Column("resource", String(2048), nullable=False),
    Column("fiat_currency", String(16)),
    Column("fiat_rate", String(64)),  # Decimal as text: never a float
    Column("valid_after", BigInteger, nullable=False),
    Column("valid_before", BigInteger, nullable=False),
    Column("tx_hash", String(66)),
    Column("block_number", BigInteger),
    Column("reason", String(128)),
    Column("booked", Boolean, nullable=False, default=False),
    Column("claimed_at_ns", BigInteger, nullable=False),
    Column("updated_at_ns", BigInteger, nullable=False),
)


class PaymentState(StrEnum):
    CLAIMED = "claimed"
    SETTLED = "settled"
    RELEASED = "released"
    FAILED = "failed"
    PENDING = "pending"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PaymentKey:
    """What makes a payment unique: EIP-3009 nonces are per (token, payer)."""

    network: str
    token: str
    payer: str
    nonce: str  # 0x + 64 hex digits

    def __post_init__(self) -> None:
        for name in ("network", "token", "payer", "nonce"):
            object.__setattr__(self, name, getattr(self, name).lower())

    def where(self) -> Any:
        c = PAYMENTS.c
        return (
            (c.network == self.network)
            & (c.token == self.token)
            & (c.payer == self.payer)
            & (c.nonce == self.nonce)
        )


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One row of ``paywall_payment``."""

    key: PaymentKey
    state: PaymentState
    owner: str
    pay_to: str
    amount: int
    route: str
    resource: str
    valid_after: int
    valid_before: int
    fiat_currency: str | None = None
    fiat_rate: Decimal | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    reason: str | None = None
    booked: bool = False


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """``won`` with the owner token to pass to later moves, or the row that was there."""

    won: bool
    owner: str = ""
    existing: PaymentRecord | None = None


def _now_ns() -> int:
    return time.time_ns()


class PaymentStore:
    """Payment records in SQLite (a file shared by processes) or PostgreSQL."""

    def __init__(self, url: str, *, busy_timeout_s: float = 10.0) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise PaywallConfigError(f"cannot parse the paywall database URL {url!r}") from None
        backend, _, _ = parsed.drivername.partition("+")
        if backend == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise PaywallConfigError(
                    "the paywall database must be a file (sqlite:///PATH) so processes share it"
                )
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine = self._sqlite(parsed, busy_timeout_s)
        elif backend in ("postgresql", "postgres"):
            self.engine = create_engine(
                parsed.set(drivername="postgresql+psycopg"),
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )
        else:
            raise PaywallConfigError(f"unsupported paywall database {backend!r}")
        self.display_url = parsed.render_as_string(hide_password=True)
        self.dialect = backend if backend == "sqlite" else "postgresql"
        with self._errors():
            _METADATA.create_all(self.engine, checkfirst=True)

    @classmethod
    def sqlite(cls, path: Path | str) -> PaymentStore:
        return cls(f"sqlite:///{Path(path).expanduser()}")

    @staticmethod
    def _sqlite(url: Any, busy_timeout_s: float) -> Engine:
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the writer; other processes see commits at once.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine

    def __repr__(self) -> str:
        return f"PaymentStore({self.display_url!r})"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise PaymentStoreError(
                f"the paywall database at {self.display_url} failed: {detail}"
            ) from None

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._errors(), self.engine.begin() as connection:
            yield connection

    # ------------------------------------------------------------ claims

    def claim(self, record: PaymentRecord) -> ClaimOutcome:
        """Claim ``record.key`` for one request; a released claim may be claimed again."""
        owner = secrets.token_hex(16)
        now = _now_ns()
        row = _row(record, owner=owner, state=PaymentState.CLAIMED, now=now)
        insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        # RETURNING tells a fresh row from a conflict on both backends (the
        # driver's rowcount is not reliable for an INSERT on PostgreSQL).
        statement = (
            insert(PAYMENTS).values(**row).on_conflict_do_nothing().returning(PAYMENTS.c.owner)
        )
        with self._begin() as connection:
            if connection.execute(statement).first() is not None:
                return ClaimOutcome(True, owner)
            # Only a claim the handler gave back may be taken again; the
            # state test in the WHERE makes this a compare-and-swap.
            retaken = connection.execute(
                update(PAYMENTS)
                .where(record.key.where() & (PAYMENTS.c.state == PaymentState.RELEASED))
                .values(**{k: v for k, v in row.items() if k not in _KEY_COLUMNS})
            )
            if retaken.rowcount == 1:
                return ClaimOutcome(True, owner)
            existing = self._get(connection, record.key)
        return ClaimOutcome(False, existing=existing)

    def reclaim_pending(self, key: PaymentKey) -> ClaimOutcome:
        """Take over a ``pending`` row to resolve it (one request at a time)."""
        owner = secrets.token_hex(16)
        with self._begin() as connection:
            moved = connection.execute(
                update(PAYMENTS)
                .where(key.where() & (PAYMENTS.c.state == PaymentState.PENDING))
                .values(state=PaymentState.CLAIMED, owner=owner, updated_at_ns=_now_ns())
            )
            if moved.rowcount == 1:
                return ClaimOutcome(True, owner)
            return ClaimOutcome(False, existing=self._get(connection, key))

    def _move(self, key: PaymentKey, owner: str, **values: Any) -> bool:
        with self._begin() as connection:
            moved = connection.execute(
                update(PAYMENTS)
                .where(key.where() & (PAYMENTS.c.owner == owner))
                .values(updated_at_ns=_now_ns(), **values)
            )
        return moved.rowcount == 1

    def release(self, key: PaymentKey, owner: str) -> bool:
        return self._move(key, owner, state=PaymentState.RELEASED, reason="handler_failed")

    def mark_settled(
        self, key: PaymentKey, owner: str, *, tx_hash: str, block_number: int | None
    ) -> bool:
        return self._move(
            key,
            owner,
            state=PaymentState.SETTLED,
            tx_hash=tx_hash.lower(),
            block_number=block_number,
            reason=None,
        )

    def mark_failed(self, key: PaymentKey, owner: str, *, reason: str) -> bool:
        return self._move(key, owner, state=PaymentState.FAILED, reason=reason[:128])

    def mark_pending(
        self, key: PaymentKey, owner: str, *, reason: str, tx_hash: str | None
    ) -> bool:
        values: dict[str, Any] = {"state": PaymentState.PENDING, "reason": reason[:128]}
        if tx_hash:
            values["tx_hash"] = tx_hash.lower()
        return self._move(key, owner, **values)

    def mark_expired(self, key: PaymentKey, owner: str) -> bool:
        return self._move(key, owner, state=PaymentState.EXPIRED, reason="authorization_expired")

    def mark_booked(self, key: PaymentKey) -> None:
        with self._begin() as connection:
            connection.execute(update(PAYMENTS).where(key.where()).values(booked=True))

    # ------------------------------------------------------------ reads

    def get(self, key: PaymentKey) -> PaymentRecord | None:
        with self._begin() as connection:
            return self._get(connection, key)

    def _get(self, connection: Connection, key: PaymentKey) -> PaymentRecord | None:
        row = connection.execute(select(PAYMENTS).where(key.where())).first()
        return None if row is None else _record(row)

    def records(self, *, state: PaymentState | None = None) -> list[PaymentRecord]:
        query = select(PAYMENTS).order_by(PAYMENTS.c.claimed_at_ns)
        if state is not None:
            query = query.where(PAYMENTS.c.state == state)
        with self._begin() as connection:
            return [_record(row) for row in connection.execute(query)]

    def unbooked(self) -> list[PaymentRecord]:
        """Settled payments whose revenue is not in the books yet."""
        query = select(PAYMENTS).where(
            (PAYMENTS.c.state == PaymentState.SETTLED) & (PAYMENTS.c.booked.is_(False))
        )
        with self._begin() as connection:
            return [_record(row) for row in connection.execute(query)]

    def dispose(self) -> None:
        self.engine.dispose()


_KEY_COLUMNS: Final = frozenset({"network", "token", "payer", "nonce"})


def _row(record: PaymentRecord, *, owner: str, state: PaymentState, now: int) -> dict[str, Any]:
    return {
        "network": record.key.network,
        "token": record.key.token,
        "payer": record.key.payer,
        "nonce": record.key.nonce,
        "state": state,
        "owner": owner,
        "pay_to": record.pay_to.lower(),
        "amount": str(record.amount),
        "route": record.route[:512],
        "resource": record.resource[:2048],
        "fiat_currency": record.fiat_currency,
        "fiat_rate": None if record.fiat_rate is None else str(record.fiat_rate),
        "valid_after": record.valid_after,
        "valid_before": record.valid_before,
        "tx_hash": None,
        "block_number": None,
        "reason": None,
        "booked": False,
        "claimed_at_ns": now,
        "updated_at_ns": now,
    }


def _record(row: Any) -> PaymentRecord:
    return PaymentRecord(
        key=PaymentKey(row.network, row.token, row.payer, row.nonce),
        state=PaymentState(row.state),
        owner=row.owner,
        pay_to=row.pay_to,
        amount=int(row.amount),
        route=row.route,
        resource=row.resource,
        valid_after=int(row.valid_after),
        valid_before=int(row.valid_before),
        fiat_currency=row.fiat_currency,
        fiat_rate=None if row.fiat_rate is None else Decimal(row.fiat_rate),
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        reason=row.reason,
        booked=bool(row.booked),
    )
