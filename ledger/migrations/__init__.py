"""Alembic migrations of the ledger schema (run by ``farthing.ledger.migration``)."""
