"""Each relayer key's next account nonce, shared by every process that settles with it.

Several ``serve`` processes sharing one payment database may settle with the
same key: each holds the key's nonce row while it signs and sends one
transaction, so they take turns at sending only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from farthing.paywall.records.database import database_errors
from farthing.paywall.records.payments import RELAYER_NONCES, NonceTicket

__all__ = ["hold_relayer_nonce"]


@contextmanager
def hold_relayer_nonce(
    engine: Engine,
    *,
    dialect: str,
    display_url: str,
    network: str,
    address: str,
    chain_next: Callable[[], int],
) -> Iterator[NonceTicket]:
    """Hold the relayer's nonce row while one transaction is signed and sent.

    Yields the nonce to use: the larger of the database's next nonce and
    ``chain_next()`` (the node's pending count, so a key also used
    elsewhere heals). The row stays locked (PostgreSQL: ``FOR UPDATE`` on
    the row; SQLite: the write lock the first statement takes) until the
    block ends, so processes sharing the key take turns at sending only;
    receipts are awaited outside. Only a ticket marked :meth:`NonceTicket.sent`
    advances the next nonce: a send that failed leaves no gap.
    """
    network, address = network.lower(), address.lower()
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    t = RELAYER_NONCES.c
    where = (t.network == network) & (t.address == address)
    with database_errors("paywall database", display_url), engine.connect() as connection:
        transaction = connection.begin()
        try:
            # A write first: SQLite takes its write lock here, not on a later upgrade.
            connection.execute(
                insert(RELAYER_NONCES)
                .values(network=network, address=address, next_nonce=0, updated_at_ns=0)
                .on_conflict_do_nothing()
            )
            stored = connection.execute(
                select(t.next_nonce).where(where).with_for_update()
            ).scalar_one()
            ticket = NonceTicket(max(int(stored), int(chain_next())))
        except BaseException:
            transaction.rollback()
            raise
        try:
            yield ticket
        finally:
            # A transaction the node accepted used its nonce, even if the
            # caller failed afterwards: record it whatever happened.
            try:
                if ticket.was_sent:
                    connection.execute(
                        update(RELAYER_NONCES)
                        .where(where)
                        .values(next_nonce=ticket.nonce + 1, updated_at_ns=time.time_ns())
                    )
                transaction.commit()
            except BaseException:
                transaction.rollback()
                raise
