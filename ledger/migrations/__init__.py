"""Alembic migrations of the ledger schema (run by ``farthing.ledger.migration``)."""

__all__: list[str] = []
