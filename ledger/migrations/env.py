"""Alembic environment for the ledger.

``farthing.ledger.migration`` hands in an open connection through
``config.attributes["connection"]``; running ``alembic`` by hand with
``-x url=...`` also works, for operators who prefer the tool itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from farthing.ledger.migration import VERSION_TABLE


def _run(connection: Connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with: alembic -x url=sqlite:///PATH upgrade head")
    with create_engine(url).begin() as own_connection:
        _run(own_connection)
