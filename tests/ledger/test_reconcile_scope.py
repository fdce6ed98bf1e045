"""`farthing ledger reconcile` says "agree" only when it checked every payment the books hold.

Real books in SQLite, real chains: the books are kept on the memory chain or
on anvil, then `farthing ledger reconcile` runs as a real process against
anvil with another chain, another token or a block range that leaves some
payments out. Each such run says how many payments it did not check and why,
and exits 1; a run that checked everything still agrees and exits 0. `farthing
agent resolve`, which reconciles the same way, says so too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from farthing.wallet.chain import MemoryChain, RpcChain
from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import deploy_stablecoin
from tests.conftest import TEST_PASSPHRASE, CliResult, cli_env, run_farthing
from tests.ledger.test_reconcile_chain import make_world

pytestmark = pytest.mark.anvil


def _reconcile(
    tmp_path: Path, rpc_url: str, token: str, database_url: str, *extra: str
) -> CliResult:
    args = ["ledger", "reconcile", "--rpc-url", rpc_url, "--token", token]
    return run_farthing(
        [*args, "--database-url", database_url, *extra], env=cli_env(tmp_path / "cli")
    )


def test_books_of_another_chain_are_not_said_to_agree(
    memory_chain: MemoryChain, anvil_chain: RpcChain, tmp_path: Path
) -> None:
    world = make_world(memory_chain, tmp_path)  # the books live on the memory chain
    world.pay(100_000)
    world.pay(250_000)
    assert anvil_chain.rpc_url is not None
    other = deploy_stablecoin(anvil_chain, sender=anvil_chain.dev_accounts()[6].signer())

    human = _reconcile(tmp_path, anvil_chain.rpc_url, other.address, world.database_url)
    assert human.code == 1, human.stdout + human.stderr
    assert "agree" not in human.stdout
    assert f"3 payment(s) on {memory_chain.network}" in human.stdout
    assert "another network" in human.stdout
    (line,) = human.stderr.strip().splitlines()
    assert line == "error: 3 payment(s) in the books were not checked; see above"

    scripted = _reconcile(
        tmp_path, anvil_chain.rpc_url, other.address, world.database_url, "--json"
    )
    assert scripted.code == 1
    report = scripted.json()
    assert report["payments_checked"] == 0 and report["breaks"] == 0
    assert report["unchecked"] == 3
    (item,) = report["unchecked_items"]
    assert item["reason"] == "other_network" and item["count"] == 3
    assert item["network"] == memory_chain.network


def test_another_token_and_blocks_outside_the_range_are_counted(
    anvil_chain: RpcChain, tmp_path: Path
) -> None:
    world = make_world(anvil_chain, tmp_path)
    assert anvil_chain.rpc_url is not None
    url, books = anvil_chain.rpc_url, world.database_url
    world.pay(100_000)
    paid_from = anvil_chain.block_number()
    world.pay(250_000)

    everything = _reconcile(
        tmp_path, url, world.asset.address, books, "--from-block", str(world.start_block)
    )
    assert everything.code == 0, everything.stdout + everything.stderr
    assert (
        "3 payments" in everything.stdout and "the books and the chain agree" in everything.stdout
    )

    other = deploy_stablecoin(anvil_chain, sender=world.owner)
    token = _reconcile(tmp_path, url, other.address, books, "--json")
    assert token.code == 1
    (item,) = token.json()["unchecked_items"]
    assert (item["reason"], item["count"]) == ("other_token", 3)
    assert item["token"] == world.asset.address.lower()

    window = ["--from-block", str(world.start_block), "--to-block", str(paid_from)]
    partial = _reconcile(tmp_path, url, world.asset.address, books, *window)
    assert partial.code == 1, partial.stdout + partial.stderr
    assert "agree" not in partial.stdout
    assert "1 payment(s) booked outside blocks" in partial.stdout
    scripted = _reconcile(tmp_path, url, world.asset.address, books, *window, "--json")
    report = scripted.json()
    assert report["payments_checked"] == 2 and report["unchecked"] == 1
    (item,) = report["unchecked_items"]
    assert item["reason"] == "outside_block_range"


def test_agent_resolve_counts_what_it_did_not_check(
    memory_chain: MemoryChain, anvil_chain: RpcChain, tmp_path: Path
) -> None:
    world = make_world(memory_chain, tmp_path)  # the books hold payments on the memory chain
    world.pay(100_000)
    assert anvil_chain.rpc_url is not None
    other = deploy_stablecoin(anvil_chain, sender=anvil_chain.dev_accounts()[6].signer())
    data_dir = tmp_path / "agent"
    settings = WalletSettings(data_dir=data_dir, scrypt_n=2**12)
    write_keystore(settings, "default", LocalSigner.generate(), SecretStr(TEST_PASSPHRASE))
    args = ["agent", "resolve", "--rpc-url", anvil_chain.rpc_url, "--token", other.address]
    args += ["--database-url", world.database_url]
    env = cli_env(data_dir)

    scripted = run_farthing([*args, "--json"], env=env)
    assert scripted.code == 1, scripted.stdout + scripted.stderr
    report = scripted.json()
    assert report["reconciliation_breaks"] == 0 and report["unchecked"] == 2
    human = run_farthing(args, env=env)
    assert human.code == 1
    assert f"not checked: 2 payment(s) on {memory_chain.network}" in human.stdout
