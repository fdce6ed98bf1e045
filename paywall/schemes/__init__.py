"""The x402 schemes, one package each: its wire, its client, server and facilitator parts, its contract.

``exact`` (one EIP-3009 transfer per payment), ``batch_settlement`` (a
deposit in an escrow, then cumulative vouchers) and ``auth_capture`` (an
escrowed authorization, captured on accepted work). A new scheme is a new
folder here. See ``docs/architecture.md``.
"""

__all__: list[str] = []
