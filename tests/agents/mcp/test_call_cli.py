"""``farthing agent call`` pays one MCP tool as a real process, and says why when it does not.

The shop runs on anvil (a subprocess cannot reach the in-process memory
chain): the x402 SDK's payment wrapper on a FastMCP server, settled by our
facilitator app, both on uvicorn at 127.0.0.1. The command is run as a user
types it, with an encrypted keystore in a fresh data directory and
``--rpc-url``/``--token``: ``--json`` prints one line, the chain moves
exactly the price, and a price above ``--max-price`` pays nothing and exits 1.
Bad ``--args`` is one usage line with exit 2. ``farthing agent run --mcp``
with no model buys the tool relevant to the task and prints its report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from farthing.wallet.chain import RpcChain
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from tests.agents.mcp.conftest import PRICE, Shop, open_shop
from tests.conftest import TEST_PASSPHRASE, CliResult, cli_env, run_farthing

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def anvil_shop(anvil_chain: RpcChain) -> Iterator[Shop]:
    with open_shop(anvil_chain) as opened:
        yield opened


def agent_call(shop: Shop, data_dir: Path, *args: str) -> CliResult:
    assert isinstance(shop.chain, RpcChain) and shop.chain.rpc_url
    chain_flags = ["--rpc-url", shop.chain.rpc_url, "--token", shop.asset.address]
    return run_farthing(
        ["agent", "call", *args, *chain_flags, "--data-dir", str(data_dir), "--json"],
        env=cli_env(data_dir),
    )


@pytest.fixture
def agent_dir(anvil_shop: Shop, tmp_path: Path) -> Iterator[tuple[Path, LocalSigner]]:
    data_dir = tmp_path / "data"
    agent = LocalSigner.generate()
    settings = WalletSettings(data_dir=data_dir, scrypt_n=2**12)
    write_keystore(settings, "default", agent, SecretStr(TEST_PASSPHRASE))
    assert anvil_shop.token.mint(agent.address, 1_000_000, sender=anvil_shop.owner).ok
    yield data_dir, agent


def test_agent_call_pays_a_tool_and_prints_one_json_line(
    anvil_shop: Shop, agent_dir: tuple[Path, LocalSigner]
) -> None:
    data_dir, agent = agent_dir
    merchant_before = anvil_shop.token.balance_of(anvil_shop.merchant)
    done = agent_call(
        anvil_shop, data_dir, anvil_shop.mcp_url, "weather", "--args", '{"city": "Porto"}',
        "--max-price", "0.01",
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    line = done.json()
    assert (line["outcome"], line["amount_atomic"], line["text"]) == (
        "paid",
        PRICE,
        "sunny in Porto",
    )
    assert line["transaction"].startswith("0x") and line["payment_id"]
    assert anvil_shop.token.balance_of(anvil_shop.merchant) == merchant_before + PRICE
    assert anvil_shop.token.balance_of(agent.address) == 1_000_000 - PRICE


def test_agent_call_above_max_price_pays_nothing(
    anvil_shop: Shop, agent_dir: tuple[Path, LocalSigner]
) -> None:
    data_dir, agent = agent_dir
    done = agent_call(
        anvil_shop, data_dir, anvil_shop.mcp_url, "weather", "--args", '{"city": "Porto"}',
        "--max-price", "0.005",
    )  # fmt: skip
    assert done.code == 1
    line = done.json()
    assert (line["outcome"], line["reason"], line["text"]) == ("not_paid", "price_above_max", None)
    assert anvil_shop.token.balance_of(agent.address) == 1_000_000


@pytest.mark.parametrize(
    "bad",
    [
        ["http://127.0.0.1:1/mcp", "weather", "--args", "[1, 2]"],
        ["http://127.0.0.1:1/mcp", "weather", "--args", "{not json"],
        ["ftp://example.com/mcp", "weather"],
        ["--run", "--task", "t", "--budget", "0.01", "--mcp", "http://127.0.0.1:1/mcp#x"],
    ],
)
def test_bad_input_is_one_usage_line(bad: list[str], tmp_path: Path) -> None:
    command = ["agent", "run", *bad[1:]] if bad[0] == "--run" else ["agent", "call", *bad]
    done = run_farthing(command, env=cli_env(tmp_path))
    assert done.code == 2, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_agent_run_mcp_buys_the_relevant_tool(
    anvil_shop: Shop, agent_dir: tuple[Path, LocalSigner]
) -> None:
    data_dir, agent = agent_dir
    assert isinstance(anvil_shop.chain, RpcChain) and anvil_shop.chain.rpc_url
    done = run_farthing(
        [
            "agent", "run", "--task", "weather in Porto", "--budget", "0.05",
            "--mcp", anvil_shop.mcp_url, "--rpc-url", anvil_shop.chain.rpc_url,
            "--token", anvil_shop.asset.address, "--data-dir", str(data_dir), "--json",
        ],
        env=cli_env(data_dir),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    report = done.json()
    assert report["payments"] == 1 and report["spent_atomic"] == PRICE
    assert report["bought"][0]["title"] == "weather"
    assert anvil_shop.token.balance_of(agent.address) == 1_000_000 - PRICE


def test_an_unreachable_server_is_one_line(
    anvil_shop: Shop, agent_dir: tuple[Path, LocalSigner]
) -> None:
    data_dir, _ = agent_dir
    done = agent_call(anvil_shop, data_dir, "http://127.0.0.1:9/mcp", "weather")
    assert done.code == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "could not reach the MCP server" in done.stderr
