"""The shipped Alembic migrations build exactly the schema the models describe, on both backends.

Alembic's own comparison runs between a migrated database and the SQLModel
metadata; any difference (a column, a type, an index) fails the test. Then a
downgrade and a second upgrade must work, and the schema check must notice a
database that is behind.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from farthing.ledger import check_schema, head_revision, schema_revision, upgrade_database
from farthing.ledger.migration import MIGRATIONS_DIR, VERSION_TABLE


def _include(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if type_ == "table":
        return bool(name and name.startswith("ledger_") and name != VERSION_TABLE)
    return True


def test_migrations_match_the_models(database) -> None:
    assert schema_revision(database) == head_revision()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _include}
        )
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_downgrade_and_upgrade_again(database) -> None:
    upgrade_database(database, "head")  # a second upgrade is a no-op
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert schema_revision(database) is None
    upgrade_database(database)
    check_schema(database)


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert any(MIGRATIONS_DIR.joinpath("versions").glob("0001_*.py"))
