"""``farthing paywall serve`` and ``farthing facilitator serve`` work as real processes, and bad input is one clear line.

The proxy test starts an upstream site (uvicorn on 127.0.0.1), then
``farthing paywall serve`` in front of it with a TOML config plus a
``--route`` flag, and pays through it with the official x402 SDK client. The
bad-input tests run the CLI as a subprocess and check for a one-line error,
a non-zero exit, no traceback and no key in the output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from x402.http.clients import x402HttpxClient

from farthing.wallet.keystore import write_keystore
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from tests import zygote
from tests.conftest import TEST_PASSPHRASE, cli_env, free_port, run_farthing
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.test_x402_sdk import sdk_client


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def proxy(chain_env: ChainEnv, tmp_path: Path) -> Iterator[dict[str, Any]]:
    key = _private(
        tmp_path / "relayer.key", chain_env.chain.dev_accounts()[6].private_key.get_secret_value()
    )
    config = tmp_path / "paywall.toml"
    config.write_text(
        "\n".join(
            [
                f'pay_to = "{chain_env.merchant}"',
                f'token = "{chain_env.asset.address}"',
                f'rpc_url = "{chain_env.chain.rpc_url}"',
                'key_file = "relayer.key"',
                f'database_url = "sqlite:///{tmp_path / "payments.sqlite"}"',
                "[rates]",
                'CNY = "0.1385"',
                "[[routes]]",
                'path = "/articles/*"',
                'price = "0.1 CNY"',
                'preview_fraction = "0.4"',
            ]
        )
    )
    assert key.exists()
    with serve_in_thread(inner_app()) as upstream:
        process = zygote.spawn(
            [
                sys.executable, "-m", "farthing", "paywall", "serve", "--json",
                "--config", str(config), "--upstream", upstream,
                "--route", "GET,POST /api/** 0.01 USDC", "--port", "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(tmp_path / "data"),
        )  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"paywall serve did not start: {process.communicate(timeout=10)[1]}")
        try:
            yield json.loads(line)
        finally:
            process.terminate()
            process.communicate(timeout=15)


@pytest.mark.anvil
def test_paywall_serve_proxies_and_charges(chain_env: ChainEnv, proxy: dict[str, Any]) -> None:
    payer = chain_env.new_payer()
    before = chain_env.token.balance_of(chain_env.merchant)
    assert proxy["network"] == chain_env.chain.network
    assert proxy["routes"] == ["GET /articles/*", "GET,POST /api/**"]

    async def go() -> tuple[httpx.Response, ...]:
        async with httpx.AsyncClient(timeout=30.0) as plain:
            free = await plain.get(f"{proxy['url']}/free")
            unpaid = await plain.get(f"{proxy['url']}/articles/farthing")
        async with x402HttpxClient(sdk_client(chain_env, payer), timeout=30.0) as http:
            article = await http.get(f"{proxy['url']}/articles/farthing")
            data = await http.post(f"{proxy['url']}/api/data")
        return free, unpaid, article, data

    free, unpaid, article, data = asyncio.run(go())
    assert free.status_code == 200 and free.text == "free"
    assert unpaid.status_code == 402 and "PAID-PART" not in unpaid.text
    assert "a quarter of a penny" in unpaid.json()["preview"]
    assert unpaid.json()["price"]["amount"] == "13850"
    assert article.status_code == 200 and article.text.count("PAID-PART") == 2
    assert data.status_code == 200 and data.json()["secret"] == "paid-data"
    assert chain_env.token.balance_of(chain_env.merchant) == before + 13850 + PRICE_ATOMIC


def _fails(result: Any, *needles: str) -> None:
    assert result.code != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


SECRET_KEY = "0x" + "ab" * 32


def test_facilitator_serve_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    key = _private(tmp_path / "k", SECRET_KEY, mode=0o644)
    result = run_farthing(
        ["facilitator", "serve", "--rpc-url", "http://127.0.0.1:9", "--key-file", str(key)],
        env=cli_env(tmp_path),
    )
    _fails(result, "readable by other users", "chmod 600")
    assert SECRET_KEY[2:] not in result.stdout + result.stderr


def test_facilitator_serve_names_an_unreachable_rpc(tmp_path: Path) -> None:
    key = _private(tmp_path / "k", SECRET_KEY)
    url = f"http://127.0.0.1:{free_port()}"
    result = run_farthing(
        ["facilitator", "serve", "--rpc-url", url, "--key-file", str(key), "--rpc-timeout-s", "1"],
        env=cli_env(tmp_path),
    )
    _fails(result, url)
    assert SECRET_KEY[2:] not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [("not a key at all", "malformed private key"), ('{"version": 3}', "not a version 3 keystore")],
)
def test_facilitator_serve_refuses_a_malformed_key(
    tmp_path: Path, content: str, needle: str
) -> None:
    key = _private(tmp_path / "k", content)
    result = run_farthing(
        ["facilitator", "serve", "--rpc-url", "http://127.0.0.1:9", "--key-file", str(key)],
        env=cli_env(tmp_path),
    )
    _fails(result, needle)


def test_facilitator_serve_refuses_a_short_token(tmp_path: Path) -> None:
    key = _private(tmp_path / "k", SECRET_KEY)
    token = _private(tmp_path / "t", "short\n")
    result = run_farthing(
        [
            "facilitator", "serve", "--rpc-url", "http://127.0.0.1:9",
            "--key-file", str(key), "--token-file", str(token),
        ],
        env=cli_env(tmp_path),
    )  # fmt: skip
    _fails(result, "shorter than 16")


def test_facilitator_serve_reads_an_encrypted_keystore(tmp_path: Path) -> None:
    settings = WalletSettings(data_dir=tmp_path, scrypt_n=2**12)
    info = write_keystore(settings, "relayer", LocalSigner.generate(), SecretStr(TEST_PASSPHRASE))
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        "facilitator",
        "serve",
        "--rpc-url",
        url,
        "--key-file",
        str(info.path),
        "--rpc-timeout-s",
        "1",
    ]
    wrong = run_farthing(
        args, env=cli_env(tmp_path, FARTHING_WALLET_PASSPHRASE="not the one it was made with")
    )
    _fails(wrong, "wrong passphrase")
    # The right passphrase unlocks it: the next thing to fail is the chain, by name.
    right = run_farthing(args, env=cli_env(tmp_path))
    _fails(right, url)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--route", "/a"], "cannot read the route"),
        (["--route", "GET /a 1e3"], "cannot read the price"),
        (["--route", "GET /a 0.0000001 USDC"], "not a whole number of atomic units"),
        (["--route", "GET /a 1 EUR"], "no exchange rate for EUR"),
        (["--rate", "CNY"], "CURRENCY=RATE"),
        ([], "no paid routes"),
    ],
)
@pytest.mark.anvil
def test_paywall_serve_bad_routes_are_one_line(
    chain_env: ChainEnv, tmp_path: Path, args: list[str], needle: str
) -> None:
    key = _private(tmp_path / "k", SECRET_KEY)
    result = run_farthing(
        [
            "paywall", "serve", "--upstream", "http://127.0.0.1:9", "--pay-to", chain_env.merchant,
            "--token", chain_env.asset.address, "--rpc-url", chain_env.chain.rpc_url or "",
            "--key-file", str(key), "--database-url", f"sqlite:///{tmp_path / 'p.sqlite'}", *args,
        ],
        env=cli_env(tmp_path),
    )  # fmt: skip
    _fails(result, needle)


def test_paywall_serve_bad_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('upstream = "http://x"\nsurprise = 1\n')
    result = run_farthing(["paywall", "serve", "--config", str(config)], env=cli_env(tmp_path))
    _fails(result, "unknown keys", "surprise")


@pytest.mark.anvil
def test_paywall_resolve_on_an_empty_database(chain_env: ChainEnv, tmp_path: Path) -> None:
    result = run_farthing(
        [
            "paywall", "resolve", "--json", "--rpc-url", chain_env.chain.rpc_url or "",
            "--database-url", f"sqlite:///{tmp_path / 'p.sqlite'}",
        ],
        env=cli_env(tmp_path),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.json() == {
        "database": f"sqlite:///{tmp_path / 'p.sqlite'}",
        "settled": 0,
        "failed": 0,
        "expired": 0,
        "still_pending": 0,
        "booked": 0,
    }
