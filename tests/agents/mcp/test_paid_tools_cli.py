"""A developer's ``PaidTools`` tool, sold through ``farthing facilitator serve``, is found by ``farthing agent discover`` and paid by ``farthing agent call``, all as a user runs them.

Real processes on this module's anvil: ``farthing facilitator serve`` (its
catalog in its SQLite file) settles for a FastMCP server whose tool is sold
with ``PaidTools`` and served by ``PaidTools.app(public_url=...)`` on uvicorn
at 127.0.0.1 (its ``RemoteFacilitator`` keeps no idle connection, so none
outlives the test). The agent's commands run with an encrypted keystore in a
fresh data directory: the first ``agent call`` pays the tool and the
facilitator catalogs it from that sale; ``agent discover --json`` lists it
(the server's ``/mcp`` and the tool's name, its price); ``agent call`` on
what the listing names pays it again; the chain moves exactly twice the
price.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.fastmcp import FastMCP
from pydantic import SecretStr

from farthing.paywall import PaymentStore, PaywallOptions, RemoteFacilitator
from farthing.paywall.discovery import ServiceMetadata, SiteDiscovery
from farthing.paywall.mcp.tools import PaidTools
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from tests.conftest import TEST_PASSPHRASE, CliResult, cli_env, free_port, run_farthing
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, chain_env, serve_in_thread
from tests.paywall.facilitator_process import private_file, running_facilitator

__all__ = ["chain_env"]

pytestmark = pytest.mark.anvil


def _tools(env: ChainEnv, facilitator_url: str, folder: Path) -> PaidTools:
    server = FastMCP("weather", stateless_http=True, json_response=True)
    no_idle = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    options = PaywallOptions(
        routes=(),
        facilitator=RemoteFacilitator(facilitator_url, transport=no_idle),
        store=PaymentStore.sqlite(folder / "paywall.sqlite"),
        pay_to=env.merchant,
        asset=env.asset,
        discovery=SiteDiscovery(service=ServiceMetadata("Weather Tools", ("weather",))),
    )
    paid = PaidTools(server, options=options)

    @paid.tool(PRICE_ATOMIC, description="The forecast for a city.", example={"city": "Lisbon"})
    async def forecast(city: str) -> str:
        return f"sunny in {city}"

    return paid


def _agent(env: ChainEnv, data_dir: Path, *args: str) -> CliResult:
    assert env.chain.rpc_url
    flags = ["--rpc-url", env.chain.rpc_url, "--token", env.asset.address, "--json"]
    return run_farthing(
        ["agent", *args, *flags, "--data-dir", str(data_dir)], env=cli_env(data_dir)
    )


def _listed(env: ChainEnv, data_dir: Path, facilitator_url: str) -> list[dict[str, Any]]:
    """``agent discover``'s MCP listings, once the catalog has the sale (recorded just after it)."""
    deadline = time.monotonic() + 30
    while True:
        done = _agent(env, data_dir, "discover", "forecast", "--facilitator", facilitator_url)
        assert done.code == 0, done.stderr
        listings = [x for x in done.json()["listings"] if x["type"] == "mcp"]
        if listings or time.monotonic() > deadline:
            return listings
        time.sleep(0.2)


def test_discover_lists_a_paid_tool_and_call_pays_it(chain_env: ChainEnv, tmp_path: Path) -> None:
    env = chain_env
    assert env.chain.rpc_url
    key = private_file(
        tmp_path / "facilitator.key", env.chain.dev_accounts()[5].private_key.get_secret_value()
    )
    data_dir = tmp_path / "agent"
    agent = LocalSigner.generate()
    settings = WalletSettings(data_dir=data_dir, scrypt_n=2**12)
    write_keystore(settings, "default", agent, SecretStr(TEST_PASSPHRASE))
    assert env.token.mint(agent.address, 1_000_000, sender=env.owner).ok
    merchant_before = env.token.balance_of(env.merchant)
    scope = ("--asset", env.asset.address, "--payee", env.merchant)
    with running_facilitator(env.chain.rpc_url, key, tmp_path / "facilitator", *scope) as served:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}/mcp"
        paid = _tools(env, served.url, tmp_path)
        with serve_in_thread(paid.app(public_url=f"http://127.0.0.1:{port}"), port=port):
            first = _agent(env, data_dir, "call", endpoint, "forecast", "--args", '{"city": "Oslo"}',
                           "--max-price", "0.01")  # fmt: skip
            assert first.code == 0, first.stderr
            assert json.loads(first.stdout)["outcome"] == "paid"
            (listing,) = _listed(env, data_dir, served.url)
            assert (listing["url"], listing["tool_name"], listing["service_name"]) == (
                endpoint,
                "forecast",
                "Weather Tools",
            )
            assert listing["amount_atomic"] == PRICE_ATOMIC
            again = _agent(env, data_dir, "call", listing["url"], listing["tool_name"],
                           "--args", '{"city": "Porto"}', "--max-price", "0.01")  # fmt: skip
            assert again.code == 0, again.stderr
            line = again.json()
            assert (line["outcome"], line["text"]) == ("paid", "sunny in Porto")
    assert env.token.balance_of(env.merchant) == merchant_before + 2 * PRICE_ATOMIC
    assert env.token.balance_of(agent.address) == 1_000_000 - 2 * PRICE_ATOMIC
