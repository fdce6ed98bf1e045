"""One module per ledger schema revision."""

__all__: list[str] = []
