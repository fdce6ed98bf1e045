"""``farthing ledger``: the books' commands (``commands``) and reconciliation (``reconcile``)."""

__all__: list[str] = []
