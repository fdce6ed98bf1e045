"""Spent sign-in nonces, in the payment database every paywall process shares.

A ``SIGN-IN-WITH-X`` header is good once (the x402 spec's SHOULD). The
paywall spends a sign-in's nonce only when the sign-in opens an article (the
wallet paid for it), so a wallet that never paid stores nothing, and a
verified header replayed at any replica sharing the database is refused.

Each nonce is one row, ``(nonce, until_s)``: ``INSERT … ON CONFLICT DO
NOTHING`` on the primary key decides first use atomically, in one process or
many. A row is useful only until its message could no longer be fresh, so
each call also deletes at most ``_EXPIRED_PER_CALL`` rows past their
``until_s`` (indexed): constant work per call, twice what a call adds, so the
table never holds much more than one freshness window of sign-ins. There is
no count limit: a fresh nonce is never refused for lack of room.
"""

from __future__ import annotations

import time
from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from farthing.paywall.records.database import create_tables, database_errors

__all__ = ["SIWX_NONCES", "UsedSignIns"]

_METADATA: Final = MetaData()
_EXPIRED_PER_CALL: Final = 2
_NONCE_CHARS_MAX: Final = 64

SIWX_NONCES: Final = Table(
    "paywall_siwx_nonce",
    _METADATA,
    Column("nonce", String(_NONCE_CHARS_MAX), primary_key=True),
    Column("until_s", BigInteger, nullable=False, index=True),
)


class UsedSignIns:
    """First use of sign-in nonces, decided by the shared database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, dialect: str, display_url: str) -> None:
        self.engine = engine
        self.dialect = dialect
        self.display_url = display_url
        with database_errors("paywall database", display_url):
            create_tables(engine, _METADATA)

    def __repr__(self) -> str:
        return f"UsedSignIns({self.display_url!r})"

    def first_use(self, nonce: str, until_s: int, *, now_s: int | None = None) -> bool:
        """Spend ``nonce`` (kept until ``until_s``); False only if it was spent before."""
        now = int(time.time()) if now_s is None else now_s
        t = SIWX_NONCES.c
        insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        expired = select(t.nonce).where(t.until_s < now).limit(_EXPIRED_PER_CALL)
        with database_errors("paywall database", self.display_url), self.engine.begin() as c:
            c.execute(delete(SIWX_NONCES).where(t.nonce.in_(expired.scalar_subquery())))
            added = c.execute(
                insert(SIWX_NONCES)
                .values(nonce=nonce[:_NONCE_CHARS_MAX], until_s=max(until_s, now))
                .on_conflict_do_nothing()
                .returning(t.nonce)
            ).first()
        return added is not None

    def count(self) -> int:
        """How many nonces are held (for tests and the soak's report)."""
        with database_errors("paywall database", self.display_url), self.engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(SIWX_NONCES)) or 0)
