"""One module per ledger schema revision."""
