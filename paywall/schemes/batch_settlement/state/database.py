"""The channel rows' database: its connections, the row reads and the compare-and-swap writes.

:class:`ChannelDatabase` opens the payment database (SQLite, a file shared by
processes, or PostgreSQL), creates ``paywall_channel`` and brings an old one
up to date. It reads a row through SQLAlchemy (:meth:`~ChannelDatabase.get`,
and under the row's lock) or, on the hot path, at the driver with no ORM
(:meth:`~ChannelDatabase._fetch`), and runs one compare-and-swap UPDATE
durably (:meth:`~ChannelDatabase._write`). On SQLite each thread keeps its
own driver connection, and the writes of this process's threads share
commits. :class:`~farthing.paywall.schemes.batch_settlement.state.store.ChannelStore`
builds the channel's operations on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from farthing.invariant import invariant
from farthing.paywall.errors import PaymentStoreError, PaywallConfigError
from farthing.paywall.records.database import (
    READ_ONLY_OPTION,
    create_tables,
    database_errors,
    open_paywall_database,
)
from farthing.paywall.records.group_commit import GroupCommitter
from farthing.paywall.schemes.batch_settlement.columns import add_missing_channel_columns
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.holds import hold_sql
from farthing.paywall.schemes.batch_settlement.state.record import ChannelRecord
from farthing.paywall.schemes.batch_settlement.state.swap import Swap, WrittenRows
from farthing.paywall.schemes.batch_settlement.state.table import (
    CHANNEL_METADATA,
    CHANNELS,
    Row,
    hot_sql,
    record_from_row,
)
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, ChannelDomain

__all__ = ["STATE_TTL_S_DEFAULT", "ChannelDatabase"]

# How old the chain mirror may be before a charge re-reads it (the spec's
# "fresh" mirrored state for local verification of a plain EOA voucher).
STATE_TTL_S_DEFAULT: Final = 60.0


def _store_error(display_url: str, exc: BaseException) -> PaymentStoreError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PaymentStoreError(f"the channel database at {display_url} failed: {detail}")


class ChannelDatabase:
    """Channel rows in SQLite (a file shared by processes) or PostgreSQL.

    ``domain`` fixes the chain and escrow the channel ids belong to. With an
    ``escrow``, unknown channels and mirrors older than ``state_ttl_s`` are read
    from the chain before a charge; without one, the caller keeps the mirror
    current through ``mirror``.
    """

    def __init__(
        self,
        url: str,
        *,
        domain: ChannelDomain,
        network: str,
        escrow: ChannelEscrow | None = None,
        state_ttl_s: float = STATE_TTL_S_DEFAULT,
        busy_timeout_s: float = 10.0,
    ) -> None:
        database = open_paywall_database(url, busy_timeout_s=busy_timeout_s, immediate_writes=True)
        self.engine = database.engine
        if state_ttl_s < 0:
            raise PaywallConfigError("state_ttl_s must not be negative")
        self.dialect = database.dialect
        self.display_url = database.display_url
        self.domain = domain
        self.network = network
        self.escrow = escrow
        self.state_ttl_ns = int(state_ttl_s * 1e9)
        self._sql_select, self._sql_swap = hot_sql(self.dialect)
        self._sql_hold = hold_sql(self.dialect, CHANNELS.name)
        self._driver_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        # SQLite: hot-path reads and the group committer's writer thread each
        # use their thread's own driver connection (_own_connection).
        self._committer = GroupCommitter(self._own_connection) if self.dialect == "sqlite" else None
        self._owned = threading.local()
        self._owned_lock = threading.Lock()
        self._owned_fairies: list[Any] = []
        # The rows as this process's queued writes leave them (the loop's charges).
        self._rows = WrittenRows()
        # Set when a chain read shows a new timed withdrawal on a channel with
        # unclaimed earnings: the claimer wakes at once rather than at its next tick.
        self.withdrawal_seen = threading.Event()
        with self._errors():
            create_tables(self.engine, CHANNEL_METADATA)
            add_missing_channel_columns(self.engine, CHANNELS.name)

    def dispose(self) -> None:
        if self._committer is not None:
            self._committer.close()
        with self._owned_lock:
            fairies, self._owned_fairies = self._owned_fairies, []
            self._owned = threading.local()
        self._rows = WrittenRows()
        for fairy in fairies:
            fairy.close()
        self.engine.dispose()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        with database_errors("channel database", self.display_url):
            yield

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._errors(), self.engine.begin() as connection:
            yield connection

    # ------------------------------------------------------------ reads

    @contextmanager
    def _reader(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection.execution_options(**{READ_ONLY_OPTION: True})

    @staticmethod
    def _key(channel_id: bytes) -> str:
        return "0x" + channel_id.hex()

    def get(self, channel_id: bytes) -> ChannelRecord | None:
        with self._errors(), self._reader() as connection:
            row = connection.execute(
                select(CHANNELS).where(CHANNELS.c.channel_id == self._key(channel_id))
            ).first()
            connection.rollback()
        return None if row is None else record_from_row(row)

    def records(self) -> list[ChannelRecord]:
        with self._errors(), self._reader() as connection:
            rows = connection.execute(select(CHANNELS).order_by(CHANNELS.c.channel_id)).all()
            connection.rollback()
        return [record_from_row(row) for row in rows]

    def _locked(self, connection: Connection, channel_id: bytes) -> ChannelRecord | None:
        row = connection.execute(
            select(CHANNELS).where(CHANNELS.c.channel_id == self._key(channel_id)).with_for_update()
        ).first()
        return None if row is None else record_from_row(row)

    # ------------------------------------------------------------ the hot path's driver

    def _fetch(
        self, channel_id: bytes, config: ChannelConfig | None = None
    ) -> ChannelRecord | None:
        """The row as committed, read at the driver (no ORM on the hot path).

        ``config``, when the caller has it checked, is the row's own config (the
        channel id is its hash) and is used rather than parsed again.
        """
        params = {"channel_id": self._key(channel_id)}
        if self.dialect == "sqlite":
            rows = self._sqlite_read(params)
        else:
            with self._raw() as connection:
                cursor = connection.cursor()
                try:
                    cursor.execute(self._sql_select, params)
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
                connection.commit()
        invariant(len(rows) <= 1, "a channel id names one row")
        return record_from_row(Row(*rows[0]), config) if rows else None

    def _sqlite_read(self, params: dict[str, Any]) -> list[Any]:
        """A SELECT on this thread's own SQLite connection (:meth:`_own_connection`).

        The rows are fetched to the end, so the statement is reset and no read
        transaction outlives the call (a live one would pin an old snapshot).
        """
        with self._own_connection() as connection:
            cursor = connection.execute(self._sql_select, params)
            try:
                return list(cursor.fetchall())
            finally:
                cursor.close()

    @contextmanager
    def _own_connection(self) -> Iterator[Any]:
        """This thread's SQLite driver connection, kept open between uses until dispose().

        A pool checkout and check-in (with its reset) cost more than the hot
        path's read or a batch's write. Driver errors become one line.
        """
        connection = getattr(self._owned, "connection", None)
        if connection is None:
            try:
                fairy = self.engine.raw_connection()
            except DBAPIError as exc:
                raise _store_error(self.display_url, exc.orig or exc) from None
            fairy.detach()  # this thread's, until dispose() closes it
            with self._owned_lock:
                self._owned_fairies.append(fairy)
            connection = fairy.dbapi_connection
            invariant(connection is not None, "a detached connection keeps its driver connection")
            assert connection is not None  # for mypy; the invariant above is the check
            self._owned.connection = connection
        try:
            yield connection
        except self._driver_error as exc:
            with suppress(self._driver_error):
                connection.rollback()
            raise _store_error(self.display_url, exc) from None

    def _write(self, swap: Swap) -> bool:
        """Run one compare-and-swap UPDATE durably; whether it wrote the row.

        On SQLite the writes of this process's threads share commits
        (:class:`~farthing.paywall.records.group_commit.GroupCommitter`): one fsync
        for every write that queued meanwhile, and none meets SQLite's busy
        handler, which sleeps in millisecond steps. PostgreSQL takes
        concurrent writers itself.
        """
        if self._committer is not None:
            written = self._committer.execute(swap.sql, swap.params)
        else:
            with self._raw() as connection:
                cursor = connection.cursor()
                try:
                    cursor.execute(swap.sql, swap.params)
                    written = cursor.rowcount
                finally:
                    cursor.close()
                connection.commit()
        invariant(written in (0, 1), "a channel id names one row")
        return bool(written == 1)

    @contextmanager
    def _raw(self) -> Iterator[Any]:
        """A pooled driver connection; a driver error becomes one ``PaymentStoreError`` line."""
        try:
            connection = self.engine.raw_connection()
        except DBAPIError as exc:
            raise _store_error(self.display_url, exc.orig or exc) from None
        try:
            yield connection
        except self._driver_error as exc:
            connection.rollback()
            raise _store_error(self.display_url, exc) from None
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()  # back to the pool
