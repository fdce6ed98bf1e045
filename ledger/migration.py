"""Create and upgrade the ledger schema with the Alembic migrations it ships.

The migrations live in ``farthing/ledger/migrations`` and are run
programmatically, on a connection of the caller's ``LedgerDatabase``, so
they see the same PostgreSQL schema and SQLite pragmas as the books. Their
version table is ``ledger_alembic_version``, leaving ``alembic_version`` to
an application that shares the database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from farthing.ledger.database import LedgerDatabase
from farthing.ledger.errors import LedgerSchemaError

__all__ = ["check_schema", "head_revision", "schema_revision", "upgrade_database"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ledger_alembic_version"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise LedgerSchemaError("the ledger package ships no migrations; reinstall farthing")
    return head


def upgrade_database(database: LedgerDatabase, revision: str = "head") -> None:
    """Create the ledger tables, or bring them up to ``revision``."""
    config = _config()
    with database.translate_errors(), database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_revision(database: LedgerDatabase) -> str | None:
    """The revision the database is at, or None if it has no ledger tables."""
    with database.translate_errors(), database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        revision = context.get_current_revision()
        connection.rollback()
        return revision


def check_schema(database: LedgerDatabase) -> None:
    """Raise ``LedgerSchemaError`` unless the database is at this code's head."""
    current = schema_revision(database)
    if current is None:
        raise LedgerSchemaError(
            f"the ledger database at {database.display_url} has no ledger tables; "
            "run `farthing ledger migrate`"
        )
    if current != head_revision():
        raise LedgerSchemaError(
            f"the ledger database at {database.display_url} is at schema {current}, "
            f"this code needs {head_revision()}; run `farthing ledger migrate`"
        )
