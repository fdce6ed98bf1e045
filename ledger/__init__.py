"""farthing.ledger."""
