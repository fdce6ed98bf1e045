"""``LedgerSettings``: where the books live and how long to wait for them.

Built by the caller and passed in (``LedgerDatabase(settings)``); nothing in
the ledger reads the environment on its own. Environment variables use the
``FARTHING_LEDGER_`` prefix; the data directory also honours the
project-wide ``FARTHING_DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LedgerSettings"]

SQLITE_FILE_NAME = "ledger.sqlite"


class LedgerSettings(BaseSettings):
    """Configuration of the ledger database."""

    model_config = SettingsConfigDict(
        env_prefix="FARTHING_LEDGER_", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; sqlite:///PATH or postgresql://... "
        "Defaults to SQLite under data_dir.",
    )
    data_dir: Path = Field(
        default=Path("~/.farthing"),
        validation_alias=AliasChoices("data_dir", "FARTHING_LEDGER_DATA_DIR", "FARTHING_DATA_DIR"),
        description="Directory that holds the default SQLite file.",
    )
    busy_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="How long a writer waits for the write lock."
    )
    connect_timeout_s: int = Field(
        default=5, gt=0, le=600, description="How long to wait for a database server to answer."
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL survives power loss; NORMAL is faster but may lose "
        "the last commits on power loss (never on a process crash).",
    )
    postgres_schema: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema that holds the ledger tables (created if missing).",
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="PostgreSQL connections kept.")

    def sqlite_path(self) -> Path:
        return self.data_dir.expanduser() / SQLITE_FILE_NAME
