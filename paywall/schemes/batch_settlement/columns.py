"""Columns added to ``paywall_channel`` after it first shipped, and bringing an old table up to date.

``create_all`` makes a missing table but never touches one that exists, so a
channel database written by older code lacks the newer columns. Each is
added here with ``ALTER TABLE … ADD COLUMN`` and a default that means what
an old row meant (nothing pending), idempotently and safely when several
processes open the same database at once.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError, ProgrammingError

__all__ = ["CHANNEL_ADDED_COLUMNS", "add_missing_channel_columns"]

# (name, SQL type and default): the amount a pending timed withdrawal takes
# out (the chain mirror's ``pendingWithdrawals.amount``), and the amount a
# cooperative refund in flight is returning (0: none). Both are uint128 as
# decimal text. Then the charges held while their answers are produced, when
# the latest of those holds lapses, and the holds' epoch
# (``farthing.paywall.schemes.batch_settlement.holds``).
CHANNEL_ADDED_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("withdraw_amount", "VARCHAR(40) NOT NULL DEFAULT '0'"),
    ("refunding", "VARCHAR(40) NOT NULL DEFAULT '0'"),
    ("held", "VARCHAR(40) NOT NULL DEFAULT '0'"),
    ("held_until_ns", "BIGINT NOT NULL DEFAULT 0"),
    ("hold_epoch", "BIGINT NOT NULL DEFAULT 0"),
)


def add_missing_channel_columns(engine: Engine, table: str) -> None:
    """Add any of :data:`CHANNEL_ADDED_COLUMNS` that ``table`` lacks."""
    present = {c["name"] for c in inspect(engine).get_columns(table)}
    for name, sql_type in CHANNEL_ADDED_COLUMNS:
        if name in present:
            continue
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
        except (ProgrammingError, DBAPIError):
            # Another process added it first; anything else shows up here.
            if name not in {c["name"] for c in inspect(engine).get_columns(table)}:
                raise
