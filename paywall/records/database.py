"""The paywall's database: one URL rule and one engine set-up for every store that shares it.

The payment records (``store``) and the channel state (``schemes.batch_settlement.state``)
live in the same database, a SQLite file shared by processes or PostgreSQL.
Both open it here, so they refuse the same URLs with the same words and use
the same SQLite settings: WAL (readers never block the writer; other
processes see commits at once), a busy timeout, and ``synchronous=FULL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from farthing.paywall.errors import PaymentStoreError, PaywallConfigError

__all__ = [
    "READ_ONLY_OPTION",
    "PaywallDatabase",
    "create_tables",
    "database_errors",
    "open_paywall_database",
]

# Processes that open one new database at once each check for the tables and
# then create them; all but one lose that race once and must look again.
_CREATE_ATTEMPTS: Final = 3

# An execution option: with ``immediate_writes``, a transaction on a
# connection carrying it begins deferred (a plain read never takes the lock).
READ_ONLY_OPTION: Final = "farthing_read_only"


@dataclass(frozen=True, slots=True)
class PaywallDatabase:
    engine: Engine
    dialect: str  # "sqlite" or "postgresql"
    display_url: str  # the URL with any password hidden


def open_paywall_database(
    url: str, *, busy_timeout_s: float, immediate_writes: bool = False
) -> PaywallDatabase:
    """An engine for ``url``; ``immediate_writes`` makes SQLite take its write lock at BEGIN."""
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
        engine = _sqlite(parsed, busy_timeout_s, immediate_writes=immediate_writes)
    elif backend in ("postgresql", "postgres"):
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5},
        )
    else:
        raise PaywallConfigError(f"unsupported paywall database {backend!r}")
    return PaywallDatabase(
        engine=engine,
        dialect="sqlite" if backend == "sqlite" else "postgresql",
        display_url=parsed.render_as_string(hide_password=True),
    )


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create ``metadata``'s missing tables; safe when other processes do it at the same moment.

    ``create_all`` checks, then creates: a process that lost the race between
    the two gets "already exists" and checks again, finding them made.
    """
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except DBAPIError:
            if attempt == _CREATE_ATTEMPTS - 1:
                raise


@contextmanager
def database_errors(what: str, display_url: str) -> Iterator[None]:
    """A driver error as one readable ``PaymentStoreError`` naming ``what`` failed."""
    try:
        yield
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise PaymentStoreError(f"the {what} at {display_url} failed: {detail}") from None


def _sqlite(url: Any, busy_timeout_s: float, *, immediate_writes: bool) -> Engine:
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if immediate_writes:
            # The driver's own BEGIN is deferred; take control so ours is IMMEDIATE.
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    if immediate_writes:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            # The write lock at BEGIN: two writers can never both read the old
            # state (a deferred BEGIN would let them, then fail one). Plain
            # reads carry READ_ONLY_OPTION and stay deferred, never waiting on it.
            reading = connection.get_execution_options().get(READ_ONLY_OPTION, False)
            connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine
