"""Exceptions the ledger raises on purpose.

A refused transfer or an exhausted budget is not an exception: it is a result
value (``CreateTransferResult.EXCEEDS_BUDGET``). These classes are for the
conditions a caller cannot treat as an ordinary outcome::

    FarthingError                      (farthing.errors)
    └── LedgerError
        ├── LedgerConfigError          a database URL or setting that cannot work
        └── LedgerDatabaseError        the database could not do what was asked
            ├── LedgerDatabaseUnavailable   unreachable server, missing file
            ├── LedgerDatabaseLocked        another writer held the lock too long
            └── LedgerSchemaError           no ledger tables, or an older schema

Every message is one sentence a user can act on, and never contains a password.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = [
    "LedgerConfigError",
    "LedgerDatabaseError",
    "LedgerDatabaseLocked",
    "LedgerDatabaseUnavailable",
    "LedgerError",
    "LedgerSchemaError",
]


class LedgerError(FarthingError):
    """Root of every exception raised deliberately by ``farthing.ledger``."""


class LedgerConfigError(LedgerError):
    """A database URL or ledger setting that cannot work."""


class LedgerDatabaseError(LedgerError):
    """The ledger database could not do what was asked."""


class LedgerDatabaseUnavailable(LedgerDatabaseError):
    """The database server is unreachable or the SQLite file does not exist."""


class LedgerDatabaseLocked(LedgerDatabaseError):
    """Another writer held the write lock for longer than the busy timeout."""


class LedgerSchemaError(LedgerDatabaseError):
    """The database has no ledger tables, or they are older than this code."""
