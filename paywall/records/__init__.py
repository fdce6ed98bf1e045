"""The paywall's payment records and the merchant's books.

``database`` (one URL rule and engine), ``payments`` (the tables and their
row values), ``store`` (one row per authorization, claimed atomically),
``nonces`` (each relayer key's next nonce), ``group_commit`` (SQLite writes made
durable together), ``books`` (revenue in the ledger) and ``resolve`` (open
payments settled on what the chain says).
"""

__all__: list[str] = []
