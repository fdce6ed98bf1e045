"""x402 over MCP, the seller's side: paid tools and the site's ``/mcp``.

MCP is a transport beside the HTTP edge over the same paywall core: the same
prices, payment store, receipts and revenue books (``specs/transports-v2/mcp.md``).
"""

__all__: list[str] = []
