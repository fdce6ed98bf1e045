"""`farthing wallet` works end to end against a real dev chain, and every bad input is one clear line.

The dev chain is a real `farthing chain dev` process (anvil); the wallet commands
run as real processes. The memory-chain test runs the same flow in one process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from farthing.cli import main
from farthing.wallet.account import Wallet
from farthing.wallet.chain import MemoryChain
from farthing.wallet.keystore import create_keystore, unlock_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import (
    TEST_PASSPHRASE,
    CliResult,
    DevChainProcess,
    cli_env,
    free_port,
    run_farthing,
)

OTHER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil dev account 1


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    assert result.code != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_root_help_lists_sub_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_farthing(["--help"], env=cli_env(tmp_path))
    assert result.code == 0
    for name in ("demo", "chain", "wallet"):
        assert name in result.stdout
    for sub in ("new", "show", "balance", "fund", "send", "import"):
        assert main(["wallet", sub, "--help"]) == 0
        assert "Usage" in capsys.readouterr().out


@pytest.mark.anvil
def test_new_fund_balance_send_on_dev_chain(dev_chain: DevChainProcess) -> None:
    env = cli_env(dev_chain.data_dir)
    created = run_farthing(["wallet", "new", "--json"], env=env)
    assert created.code == 0, created.stderr
    address = created.json()["address"]

    funded = run_farthing(["wallet", "fund", "25.5", "--json"], env=env)
    assert funded.code == 0, funded.stderr
    assert funded.json()["minted_atomic"] == 25_500_000

    balance = run_farthing(["wallet", "balance", "--json"], env=env).json()
    assert balance["address"] == address
    assert balance["balance_atomic"] == 25_500_000
    assert balance["balance"] == "25.5"
    assert balance["network"] == "eip155:31337"
    assert balance["token"] == dev_chain.info["token"]["address"]

    sent = run_farthing(["wallet", "send", OTHER, "1.25", "--json"], env=env)
    assert sent.code == 0, sent.stderr
    assert sent.json()["transaction"].startswith("0x")
    after = run_farthing(["wallet", "balance", "--json"], env=env).json()
    assert after["balance_atomic"] == 24_250_000

    shown = run_farthing(["wallet", "show", "--json"], env=env)
    assert shown.json()["address"] == address
    # Nothing any command printed contains a key or the passphrase.
    for result in (created, funded, sent, shown):
        assert TEST_PASSPHRASE not in result.stdout + result.stderr
        assert "private_key" not in result.stdout


@pytest.mark.anvil
def test_bad_input_on_dev_chain(dev_chain: DevChainProcess, tmp_path: Path) -> None:
    env = cli_env(dev_chain.data_dir)
    assert run_farthing(["wallet", "new"], env=env).code == 0

    assert_one_line_error(
        run_farthing(["wallet", "fund", "1.0000001"], env=env), "more than 6 decimal places"
    )
    wrong = run_farthing(
        ["wallet", "send", OTHER, "1"],
        env={**env, "FARTHING_WALLET_PASSPHRASE": "not the passphrase"},
    )
    assert_one_line_error(wrong, "wrong passphrase")
    assert_one_line_error(
        run_farthing(["wallet", "send", OTHER, "1000"], env=env), "insufficient balance"
    )
    assert_one_line_error(
        run_farthing(["wallet", "send", "0x1234", "1"], env=env), "not an address"
    )
    assert_one_line_error(
        run_farthing(["wallet", "balance", "--address", "0xnothex"], env=env), "not an address"
    )
    dead = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(run_farthing(["wallet", "balance", "--rpc-url", dead], env=env), dead)
    assert_one_line_error(
        run_farthing(["wallet", "balance", "--network", "mainnet"], env=env), "unknown network"
    )
    secret_key = "ab" * 31 + "zz"
    bad_key = run_farthing(
        ["wallet", "import", "--name", "imported", "--key-file", "-"], env=env, stdin=secret_key
    )
    assert_one_line_error(bad_key, "malformed private key")
    assert secret_key not in bad_key.stderr + bad_key.stdout


def test_fund_refuses_non_local_networks_before_touching_them(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run_farthing(["wallet", "new"], env=env)
    # An unreachable Base RPC: the error names the URL and nothing is minted.
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_farthing(["wallet", "fund", "1", "--network", "base", "--rpc-url", dead], env=env)
    assert_one_line_error(result, dead)


def test_missing_wallet_and_missing_dev_chain(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    assert_one_line_error(run_farthing(["wallet", "show"], env=env), "farthing wallet new")
    run_farthing(["wallet", "new"], env=env)
    assert_one_line_error(run_farthing(["wallet", "balance"], env=env), "farthing chain dev")


def test_new_fund_balance_on_memory_chain(tmp_path: Path) -> None:
    settings = WalletSettings(data_dir=tmp_path, scrypt_n=2**12)
    passphrase = SecretStr(TEST_PASSPHRASE)
    info = create_keystore(settings, "agent", passphrase)

    chain = MemoryChain()
    minter = chain.dev_accounts()[0].signer()
    asset = deploy_stablecoin(chain, sender=minter)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(minter.address, sender=minter).ok

    wallet = Wallet(unlock_keystore(settings, "agent", passphrase), chain, asset)
    assert wallet.address == info.address
    assert token.mint(wallet.address, asset.parse("25.5"), sender=minter).ok
    assert wallet.balance().atomic == 25_500_000

    # The wallet pays by authorization: someone else submits and pays the gas.
    signed = wallet.authorize(OTHER, 100_000)
    assert wallet.submit_authorization(signed, sender=minter).ok
    assert wallet.balance().atomic == 25_400_000
    replay = wallet.submit_authorization(signed, sender=minter)
    assert not replay.ok and replay.reason == "authorization_used_or_canceled"
