"""``LedgerDatabase``: an engine set up for the ledger, and its units of work.

SQLite needs three things for concurrent writers to be safe and to wait for
each other instead of failing:

* WAL journal mode, so readers never block the writer;
* ``busy_timeout``, so a writer waits for the lock instead of failing;
* ``BEGIN IMMEDIATE`` for writers. Python's sqlite3 module starts database
  transactions lazily with a plain (deferred) BEGIN, which takes the write
  lock only at the first write, after the budget has been read. SQLAlchemy's
  documented recipe turns that off (``isolation_level = None`` on connect)
  and emits BEGIN itself from the ``begin`` event, which is where the
  IMMEDIATE goes.

PostgreSQL runs at READ COMMITTED; writers serialise on a row lock of the
audit head and lock the accounts they touch (``repository.py``).

``write()`` and ``read()`` are conveniences: each yields a ``Session`` in a
fresh database transaction, commits on success and rolls back on error. The
repository functions themselves never commit, so callers may also manage
sessions their own way. Driver errors that mean "unreachable", "locked" or
"not migrated" become one-line ``LedgerError`` subclasses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from farthing.ledger.errors import (
    LedgerConfigError,
    LedgerDatabaseError,
    LedgerDatabaseLocked,
    LedgerDatabaseUnavailable,
    LedgerError,
    LedgerSchemaError,
)
from farthing.ledger.settings import LedgerSettings

__all__ = ["LedgerDatabase", "normalise_database_url"]

_READ_OPTION = "farthing_ledger_read"
_UNREACHABLE = (
    r"unable to open database|could not connect|connection refused|connection failed|"
    r"timeout expired|could not translate host|database .* does not exist|"
    r"server closed the connection|no route to host"
)


def normalise_database_url(url: str) -> URL:
    """Parse a ledger URL, steering PostgreSQL URLs to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise LedgerConfigError(f"cannot parse the ledger database URL {url!r}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if driver not in ("", "psycopg"):
            raise LedgerConfigError(
                f"the ledger talks to PostgreSQL through psycopg 3, not {driver!r}; "
                "use postgresql://..."
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise LedgerConfigError(f"unsupported SQLite driver {driver!r}; use sqlite:///PATH")
        return parsed
    raise LedgerConfigError(
        f"unsupported ledger database {backend!r}; use sqlite:///PATH or postgresql://..."
    )


class LedgerDatabase:
    """The ledger's engine plus ``write()`` / ``read()`` units of work."""

    def __init__(self, settings: LedgerSettings, *, must_exist: bool = False) -> None:
        self.settings = settings
        if settings.database_url is None:
            path = settings.sqlite_path()
            if not must_exist:
                path.parent.mkdir(parents=True, exist_ok=True)
            url = URL.create("sqlite", database=str(path))
        else:
            url = normalise_database_url(settings.database_url)
        self.url = url
        self.display_url = url.render_as_string(hide_password=True)
        self.dialect_name = url.get_backend_name()
        if self.dialect_name == "sqlite":
            self.engine = self._sqlite_engine(url, must_exist=must_exist)
        else:
            self.engine = self._postgres_engine(url)
        self._read_engine = self.engine.execution_options(**{_READ_OPTION: True})

    # Engines ------------------------------------------------------------

    def _sqlite_engine(self, url: URL, *, must_exist: bool) -> Engine:
        database = url.database or ""
        in_memory = database in ("", ":memory:")
        if must_exist and not in_memory:
            from pathlib import Path

            if not Path(database).is_file():
                raise LedgerDatabaseUnavailable(
                    f"no ledger database at {database}; create it with `farthing ledger migrate`"
                )
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": self.settings.busy_timeout_s, "check_same_thread": False}
        }
        if in_memory:
            kwargs["poolclass"] = StaticPool  # one shared connection, or each sees its own DB
        engine = create_engine(url, **kwargs)
        busy_timeout_ms = int(self.settings.busy_timeout_s * 1000)
        synchronous = self.settings.sqlite_synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take BEGIN away from the sqlite3 module; _on_begin emits it.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            if connection.get_execution_options().get(_READ_OPTION):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _postgres_engine(self, url: URL) -> Engine:
        connect_args: dict[str, Any] = {"connect_timeout": self.settings.connect_timeout_s}
        schema = self.settings.postgres_schema
        if schema is not None:
            connect_args["options"] = f"-csearch_path={schema}"
        engine = create_engine(
            url,
            connect_args=connect_args,
            pool_size=self.settings.pool_size,
            pool_pre_ping=True,
        )
        if schema is not None:
            created: list[bool] = []

            @event.listens_for(engine, "connect")
            def _ensure_schema(dbapi_connection: Any, _record: Any) -> None:
                if created:
                    return
                with dbapi_connection.cursor() as cursor:
                    cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                dbapi_connection.commit()
                created.append(True)

        return engine

    # Units of work ------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session holding the write lock; commits when the block succeeds."""
        with (
            self.translate_errors(),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; it takes no write lock on SQLite."""
        with (
            self.translate_errors(),
            Session(self._read_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn driver errors users can act on into one-line ``LedgerError``s."""
        try:
            yield
        except DBAPIError as exc:
            raise self.describe_error(exc) from exc

    def describe_error(self, exc: DBAPIError) -> Exception:
        """The ``LedgerError`` that explains ``exc``, or ``exc`` itself if it is a bug."""
        text = str(exc.orig) if exc.orig is not None else str(exc)
        first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        where = self.display_url
        kind: type[LedgerError]
        if re.search(
            r"database is locked|database table is locked|lock timeout", text, re.IGNORECASE
        ):
            kind = LedgerDatabaseLocked
            message = (
                f"the ledger database at {where} stayed locked by another writer for longer "
                f"than {self.settings.busy_timeout_s:g}s"
            )
        elif re.search(
            r"no such table|relation .* does not exist|undefined_?table", text, re.IGNORECASE
        ):
            kind = LedgerSchemaError
            message = f"the ledger database at {where} has no ledger tables; run `farthing ledger migrate`"
        elif exc.connection_invalidated or re.search(_UNREACHABLE, text, re.IGNORECASE):
            kind = LedgerDatabaseUnavailable
            message = f"cannot reach the ledger database at {where}: {first_line}"
        elif type(exc).__name__ == "OperationalError":
            kind = LedgerDatabaseError
            message = f"the ledger database at {where} failed: {first_line}"
        else:
            return exc
        error: Exception = kind(message)
        return error

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"LedgerDatabase({self.display_url!r})"
