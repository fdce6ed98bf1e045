"""Multi-row INSERT straight to the driver, for the batch write path.

SQLAlchemy's ``executemany`` builds a parameter dict per row and runs every
type's bind processor, which for a batch of a few hundred transfers costs
more than the database work itself. Rows here are already plain values, so
the only conversion needed is the one ``HexUInt`` does (an int to
fixed-width hex), done inline, and the rows go to ``cursor.executemany`` as
tuples. The statement text is built from the same ``Table`` the models
define, so the column list cannot drift from the schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from farthing.ledger.columns import HexUInt

__all__ = ["insert_rows", "select_rows"]


@cache
def _plan(table: Table, placeholder: str) -> tuple[str, tuple[tuple[str, str | None], ...]]:
    columns = tuple(
        (column.name, f"0{column.type.width}x" if isinstance(column.type, HexUInt) else None)
        for column in table.columns
    )
    names = ", ".join(name for name, _ in columns)
    marks = ", ".join(placeholder for _ in columns)
    return f"INSERT INTO {table.name} ({names}) VALUES ({marks})", columns


def _placeholder(session: Session) -> str:
    return "?" if session.connection().dialect.paramstyle == "qmark" else "%s"


def select_rows(
    session: Session, table: Table, key: str, values: Sequence[int]
) -> list[dict[str, Any]]:
    """Rows of ``table`` whose hex-id column ``key`` is one of ``values``, as dicts."""
    if not values:
        return []
    _, columns = _plan(table, "?")
    key_format = dict(columns)[key]
    if key_format is None:
        raise ValueError(f"{table.name}.{key} is not a HexUInt column")
    names = ", ".join(name for name, _ in columns)
    marks = ", ".join(_placeholder(session) for _ in values)
    sql = f"SELECT {names} FROM {table.name} WHERE {key} IN ({marks})"
    cursor = session.connection().exec_driver_sql(sql, tuple(format(v, key_format) for v in values))
    rows = []
    for record in cursor:
        rows.append(
            {
                name: value if fmt is None or value is None else int(value, 16)
                for (name, fmt), value in zip(columns, record, strict=True)
            }
        )
    return rows


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts keyed by every column of ``table``) in one executemany."""
    if not rows:
        return
    sql, columns = _plan(table, _placeholder(session))
    values = [
        tuple(
            row[name] if fmt is None or row[name] is None else format(row[name], fmt)
            for name, fmt in columns
        )
        for row in rows
    ]
    session.connection().exec_driver_sql(sql, values)
