"""x402 over MCP, the buyer's side: a paying MCP client under the agent's spend policy, approvals and two-phase books.

``binding`` (the tool-result binding: a tool's terms and answer, the
payment's ``_meta``), ``session`` (``PayingSession``: one tool call paid
through the agent's ``Payer``; ``open_mcp``: a bounded streamable-HTTP
session), ``tools`` (the server's tools through ``langchain-mcp-adapters``,
paying only what the run allowed), ``runner`` (``farthing agent run --mcp``),
``cli`` (``farthing agent call``). Start with docs/agents.md, "Paying for MCP
tools".

The names are imported on first use (``farthing.lazy``): importing one
submodule does not load the MCP client.
"""

from typing import TYPE_CHECKING

from farthing.lazy import lazy_exports

if TYPE_CHECKING:
    from farthing.agents.mcp.runner import McpRun as McpRun
    from farthing.agents.mcp.session import PayingSession as PayingSession
    from farthing.agents.mcp.session import ToolCall as ToolCall
    from farthing.agents.mcp.session import open_mcp as open_mcp
    from farthing.agents.mcp.tools import PayingInterceptor as PayingInterceptor

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
