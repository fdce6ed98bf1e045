"""docs/mcp.md's command-line examples run as written, as real processes, so the page and the code cannot drift.

Every fence of docs/mcp.md marked ``<!-- run by tests/paywall/mcp/test_docs_commands.py -->``
is read out of the page: the site's ``toml`` becomes the config of a real
``farthing paywall serve`` (with the chain's lines the page leaves to
docs/paywall.md and one paid route), and each ``bash`` line runs as typed,
through the docs walk's reader (``tests/test_docs_walk.py``): ``farthing
facilitator serve`` and ``farthing paywall serve`` in the background until
their ``--json`` line, every other ``farthing`` line as ``python -m farthing``
that must exit 0. Only the page's fixed addresses change (a table, as in the
docs walk): the dev chain's RPC URL and token become this module's anvil and
token, the ports free ones, and the agent's lines get the chain's flags (the
page leaves them to its dev chain's record). The agent pays the site's
``fetch`` tool over MCP, the facilitator catalogs it from that sale,
``agent discover`` lists it, a second article is bought, each article is its
own resource in the books, and ``farthing demo --mcp --json`` prints its line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from farthing.agents.books import AgentBooks
from farthing.agents.reservations import booked_payments
from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from tests.conftest import TEST_PASSPHRASE, cli_env, free_port, ready_line
from tests.paywall.conftest import ChainEnv, chain_env, serve_in_thread
from tests.test_docs_walk import TIMEOUT_S, Walk

__all__ = ["chain_env"]

pytestmark = pytest.mark.anvil

DOC = Path(__file__).resolve().parents[3] / "docs" / "mcp.md"
MARKER = "<!-- run by tests/paywall/mcp/test_docs_commands.py -->"
DEV_RPC = "http://127.0.0.1:8545"
DEV_TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ARTICLE = "<article><h1>{title}</h1><p>A free first part.</p><p>PAID-PART of {title}.</p></article>"


def marked_fences(kind: str) -> list[list[str]]:
    """The marked fences of docs/mcp.md of ``kind`` (``toml``, ``bash``), each as its lines."""
    found = re.findall(re.escape(MARKER) + r"\n```(\w+)\n(.*?)```", DOC.read_text(), re.DOTALL)
    blocks = [body.splitlines() for fence, body in found if fence == kind]
    assert blocks, f"docs/mcp.md has no {kind} fence marked {MARKER}"
    return blocks


async def _article(request: Request) -> HTMLResponse:
    title = request.path_params["name"].title()
    return HTMLResponse(ARTICLE.format(title=title))


class McpWalk(Walk):
    """The docs walk's reader, with the facilitator in the background and the agent on the chain."""

    def __init__(self, home: Path, env: dict[str, str], table: list[tuple[str, str]]) -> None:
        super().__init__(home, env, table)
        self.agent_flags: list[str] = []

    def run(self, line: str) -> None:
        stripped = line.strip()
        for doc_text, value in self.table:
            stripped = stripped.replace(doc_text, value)
        argv = shlex.split(stripped, comments=True)
        if argv[:3] == ["farthing", "facilitator", "serve"]:
            process = self._start([sys.executable, "-m", "farthing", *argv[1:], "--json"])
            self.ready["facilitator"] = ready_line(process, TIMEOUT_S)
        elif argv[:2] == ["farthing", "agent"]:
            result = self.farthing([*argv[1:], *self.agent_flags])
            assert result.code == 0, f"{stripped}: {result.stderr}"
            self.outputs.append(result.stdout)
        else:
            super().run(line)


def _site_config(env: ChainEnv, folder: Path, upstream: str, table: list[tuple[str, str]]) -> None:
    """paywall.toml: the chain's lines, the page's own block, one paid route."""
    (doc_toml,) = marked_fences("toml")
    text = "\n".join(doc_toml)
    for doc_text, value in table:
        text = text.replace(doc_text, value)
    head = [
        f'pay_to = "{env.merchant}"',
        f'token = "{env.asset.address}"',
        f'rpc_url = "{env.chain.rpc_url}"',
        f'database_url = "sqlite:///{folder / "payments.sqlite"}"',
    ]
    routes = ["[[routes]]", 'path = "/posts/*"', 'price = "0.01 USDC"', 'preview_fraction = "0.4"']
    (folder / "paywall.toml").write_text("\n".join([*head, text, *routes]) + "\n")


def _json_lines(output: str) -> Any:
    (line,) = output.strip().splitlines()
    return json.loads(line)


def test_the_mcp_pages_commands_run_as_written(chain_env: ChainEnv, tmp_path: Path) -> None:
    env = chain_env
    assert env.chain.rpc_url
    site_port, facilitator_port = free_port(), free_port()
    site = f"http://127.0.0.1:{site_port}"
    home = tmp_path / "home"
    home.mkdir()
    data = tmp_path / "data"
    # The facilitator's gas key, as the page names it.
    key = home / "facilitator.key"
    key.write_text(env.chain.dev_accounts()[5].private_key.get_secret_value() + "\n")
    os.chmod(key, 0o600)
    # The agent's wallet (docs/agents.md sets one up), funded on this chain.
    agent = LocalSigner.generate()
    write_keystore(
        WalletSettings(data_dir=data, scrypt_n=2**12), "default", agent, SecretStr(TEST_PASSPHRASE)
    )
    assert env.token.mint(agent.address, 1_000_000, sender=env.owner).ok
    app = Starlette(routes=[Route("/posts/{name}", _article)])
    with serve_in_thread(app) as upstream:
        table = [
            (DEV_RPC, env.chain.rpc_url),
            (DEV_TOKEN, env.asset.address),
            ("127.0.0.1:8402", f"127.0.0.1:{facilitator_port}"),
            ("facilitator serve", f"facilitator serve --port {facilitator_port}"),
            ("127.0.0.1:4021", f"127.0.0.1:{site_port}"),
            ("--port 4021", f"--port {site_port}"),
            ("http://127.0.0.1:8000", upstream),
        ]
        _site_config(env, home, upstream, table)
        walk = McpWalk(home, cli_env(data), table)
        walk.agent_flags = ["--rpc-url", env.chain.rpc_url, "--token", env.asset.address]
        merchant_before = env.token.balance_of(env.merchant)
        try:
            (commands,) = marked_fences("bash")[:1]
            for line in commands:
                if " agent discover " in f" {line} ":
                    _until_cataloged(walk, line)
                else:
                    walk.run(line)
            (demo,) = marked_fences("bash")[1:]
            for line in demo:
                walk.run(line)
        finally:
            walk.stop()

    first, found, second, demo_line = walk.outputs
    assert "paid" in first and f"{site}/posts/hello" in first, first
    listing = next(x for x in _json_lines(found)["listings"] if x["type"] == "mcp")
    assert (listing["url"], listing["tool_name"]) == (f"{site}/mcp", "fetch")
    assert listing["service_name"] == "Farthing Blog"
    bought = _json_lines(second)
    assert (bought["outcome"], bought["amount_atomic"]) == ("paid", 10_000)
    assert "PAID-PART of World" in bought["text"]
    assert env.token.balance_of(env.merchant) == merchant_before + 20_000
    assert env.token.balance_of(agent.address) == 1_000_000 - 20_000
    # Each article bought over MCP is its own resource in the agent's books.
    ledger = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{data / 'ledger.sqlite'}"))
    try:
        books = AgentBooks(ledger, agent_id="agent", asset=env.asset)
        resources = sorted(p.resource for p in booked_payments(books) if p.state == "posted")
    finally:
        ledger.dispose()
    assert resources == [f"{site}/posts/hello", f"{site}/posts/world"]
    summary = _json_lines(demo_line)
    assert summary["transport"] == "mcp" and summary["reconciliation_breaks"] == 0


def _until_cataloged(walk: McpWalk, line: str) -> None:
    """Run the discover line until it lists the tool: the facilitator catalogs just after its answer."""
    deadline = time.monotonic() + 30
    while True:
        walk.run(line)
        listings = _json_lines(walk.outputs[-1])["listings"]
        if any(x["type"] == "mcp" for x in listings) or time.monotonic() > deadline:
            return
        walk.outputs.pop()
        time.sleep(0.2)
