"""The agent's side of x402 ``batch-settlement``: deposit once, then pay by voucher.

``payer`` (choosing, opening and paying a channel), ``deposits`` (what a
deposit locks and whether a person must say yes), ``store`` (the channel
rows and their signing lease), ``books`` (deposits locked, charges spent),
``cli`` (``farthing agent channels``).
"""

__all__: list[str] = []
