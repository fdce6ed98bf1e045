"""x402 over MCP, the buyer's side: a paying MCP client under the agent's
spend policy, approvals and two-phase books.
"""

__all__: list[str] = []
