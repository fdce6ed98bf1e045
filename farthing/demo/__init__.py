"""``farthing demo``: an agent buys articles from a paywalled blog, on embedded defaults.

Everything runs in this process, with no node and no server: the in-process
chain (py-evm), SQLite files in a fresh folder under FARTHING_DATA_DIR/demo
(kept, so `farthing dashboard` can open them: the command it prints
opens the agent's books, the merchant's and the paywall's payments), and the blog served
through ``httpx.ASGITransport``. The demo

1. deploys the stablecoin and funds a fresh agent wallet by minting, booking
   the mint as the agent's funding (with its transaction hash);
2. serves ``farthing.agents.blog`` behind ``PaywallMiddleware``: six articles,
   the first third of each free, the whole at 0.1 CNY (0.01385 USDC at the
   stated 0.1385 USDC per CNY), revenue booked in the merchant's own ledger;
3. runs the agent with a task and a budget that covers only some articles,
   showing its progress;
4. prints the purchases, what was skipped and why, and the reconciliation of
   the agent's books with the chain.

``--scheme batch-settlement`` has the blog offer x402 ``batch-settlement``
beside ``exact``; the agent, expecting several buys from the one blog, takes
the channel: one deposit, a voucher per article (no transaction), then one
claim and one settle by the merchant's own claimer at the end. Both sides'
channel books are also reconciled with the escrow's events (the agent's
deposits and charges, the merchant's claims and settles), and the breaks
reported are the sum. ``exact`` (one transfer per article)
stays the default.

``--chain-url URL`` runs the same against anvil (or any dev chain whose
first two accounts are anvil's funded dev accounts). ``--json`` prints one
line; its ``onchain_tx`` counts the transactions the purchases and their
settlement took (the setup's deploy and mint are not counted).

``--mcp`` runs the whole loop over MCP instead (``farthing.demo.mcp``): the
blog also serves ``/mcp`` (``mcp = true``), a facilitator catalogs what it
settles in its own database, and the agent finds the blog's ``fetch`` tool
in that catalog, reads the free index, and pays for articles through the
paying MCP client, under the same policy and two-phase books.

The command is ``command.py``; what every run shares and the run over HTTP
are ``run.py``; the run over MCP is ``mcp.py``.
"""

from farthing.demo.command import app
from farthing.demo.run import DEMO_BUDGET, DEMO_SCHEMES, DEMO_TASK, run_demo

__all__ = ["DEMO_BUDGET", "DEMO_SCHEMES", "DEMO_TASK", "app", "run_demo"]
