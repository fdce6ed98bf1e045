"""x402 over MCP, the seller's side: paid tools and the site's ``/mcp``.

MCP is a transport beside the HTTP edge over the same paywall core: the same
prices, payment store, receipts and revenue books (``specs/transports-v2/mcp.md``).

``exchange`` runs one MCP call through ``PaywallMiddleware`` in process and
writes x402's tool-result binding; ``meta`` reads ``_meta`` (the payment, a
receipt, a sign-in) without trusting it; ``tools`` makes a FastMCP server's
tools paid (``PaidTools``); ``fetch`` is the site's ``fetch`` tool and
resources; ``endpoints`` sells a paid JSON endpoint as a tool (the inference
gateway's ``chat``); ``mount`` puts ``/mcp`` beside an app, its body bounded.
"""

__all__: list[str] = []
