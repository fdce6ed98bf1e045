"""``farthing paywall serve --config`` sells through batch-settlement channels, and channel config mistakes are one line.

All real: anvil with our escrow at the canonical address, our token, a
``farthing paywall serve`` process (its ``[channels]`` table and a route
with ``schemes = ["exact", "batch-settlement"]``) in front of a tiny
upstream on uvicorn, and the x402 SDK's own batch-settlement client paying
it several times over one deposit. Then ``farthing paywall claim --json``
claims and settles: the receiver's on-chain balance equals what the channel
was charged, and the ledger books the claim and the settle. The config
mistakes (no key file, a loose key file, a channel route without
``[channels]``, a bad scheme, a bad ``min_deposit``, a remote facilitator
without channels) each end the command with one ``error:`` line, a non-zero
exit, no traceback and no key printed. ``init --channels`` writes a config
that loads and a private receiver-authorizer key.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from x402.http.clients import x402HttpxClient

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.paywall.site.config import load_config
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests import zygote
from tests.conftest import cli_env, free_port, run_farthing
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.test_channel_paywall import _sdk_client

SECRET_KEY = "0x" + "ab" * 32
PAYMENTS_N = 5


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


def _fails(result: Any, *needles: str) -> str:
    assert result.code != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert SECRET_KEY[2:] not in result.stdout + result.stderr
    return str(lines[0])


def _config(tmp_path: Path, *, rpc_url: str, token: str, pay_to: str, extra: str = "") -> Path:
    config = tmp_path / "paywall.toml"
    config.write_text(
        "\n".join(
            [
                'upstream = "http://127.0.0.1:9"',
                f'pay_to = "{pay_to}"',
                f'token = "{token}"',
                f'rpc_url = "{rpc_url}"',
                'key_file = "relayer.key"',
                f'database_url = "sqlite:///{tmp_path / "payments.sqlite"}"',
                extra,
            ]
        )
    )
    return config


CHANNEL_ROUTE = """
[[routes]]
path = "/api/**"
price = "0.01 USDC"
schemes = ["exact", "batch-settlement"]
"""


CHANNELS_TABLE = """
[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = 1800
min_deposit = "0.1 USDC"
"""


@contextmanager
def _serving(
    config: Path, upstream: str, data_dir: Path
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """``farthing paywall serve --json --config CONFIG`` as a real process; yields its ready line."""
    process = zygote.spawn(
        [
            sys.executable, "-m", "farthing", "paywall", "serve", "--json",
            "--config", str(config), "--upstream", upstream, "--port", "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"paywall serve did not start: {process.communicate(timeout=30)[1]}")
    printed: list[str] = [line]
    try:
        yield json.loads(line), printed
    finally:
        process.terminate()
        try:
            printed.extend(process.communicate(timeout=30))
        except subprocess.TimeoutExpired:
            process.kill()
            printed.extend(process.communicate())


@pytest.mark.anvil
def test_serve_sells_through_channels_and_claim_settles(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    place_channel_contracts(env.chain)
    authorizer = LocalSigner.generate()
    _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    relayer_key = env.chain.dev_accounts()[5].private_key.get_secret_value()
    _private(tmp_path / "relayer.key", relayer_key)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config = _config(
        tmp_path,
        rpc_url=env.chain.rpc_url or "",
        token=env.asset.address,
        pay_to=env.merchant,
        extra=f'ledger_database_url = "{ledger_url}"\n' + CHANNEL_ROUTE + CHANNELS_TABLE,
    )
    payer = env.new_payer()
    merchant_before = env.token.balance_of(env.merchant)

    async def pay(url: str) -> tuple[httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=30.0) as plain:
            offer = await plain.get(f"{url}/api/data")
        async with x402HttpxClient(_sdk_client(env, payer), timeout=60.0) as http:
            return offer, [await http.get(f"{url}/api/data") for _ in range(PAYMENTS_N)]

    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, printed),
    ):
        assert ready["network"] == env.chain.network
        assert ready["channels"] == {
            "receiver_authorizer": authorizer.address,
            "withdraw_delay_s": 1800,
            "routes": ["GET /api/**"],
        }
        block_before = env.chain.block_number()
        offer, responses = asyncio.run(pay(ready["url"]))
        # One on-chain transaction for all of them: the deposit.
        assert env.chain.block_number() - block_before == 1

        assert offer.status_code == 402
        accepts = unb64_json(offer.headers["payment-required"])["accepts"]
        assert [a["scheme"] for a in accepts] == ["exact", "batch-settlement"]
        extra = accepts[1]["extra"]
        assert extra["receiverAuthorizer"] == authorizer.address
        assert extra["withdrawDelay"] == 1800 and extra["minDeposit"] == "100000"
        for n, response in enumerate(responses, start=1):
            assert response.status_code == 200, response.text
            assert response.json()["secret"] == "paid-data"
            receipt = unb64_json(response.headers["payment-response"])
            assert receipt["extra"]["channelState"]["chargedCumulativeAmount"] == str(
                n * PRICE_ATOMIC
            )

        # Claimed and settled now, while the server runs (its own claimer waits an hour).
        claim = run_farthing(
            [
                "paywall", "claim", "--json", "--rpc-url", env.chain.rpc_url or "",
                "--authorizer-key-file", str(tmp_path / "authorizer.key"),
                "--key-file", str(tmp_path / "relayer.key"),
                "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}",
                "--ledger-database-url", ledger_url,
            ],
            env=cli_env(tmp_path / "data"),
        )  # fmt: skip
    assert claim.code == 0, claim.stderr
    out = claim.json()
    charged = PAYMENTS_N * PRICE_ATOMIC
    ((channel_id, claimed),) = out["claimed"].items()
    assert claimed == str(charged) and out["settled"] == str(charged) and out["failures"] == []
    assert out["booked"] == {"claims": 1, "settles": 1}
    assert ChannelEscrow(env.chain).channel(bytes.fromhex(channel_id[2:]))[1] == charged
    assert env.token.balance_of(env.merchant) - merchant_before == charged
    for text in [*printed, claim.stdout, claim.stderr]:
        assert authorizer.private_key.get_secret_value()[2:] not in text
        assert relayer_key.removeprefix("0x") not in text


@pytest.mark.anvil
def test_serve_claims_in_the_background_at_the_threshold(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    place_channel_contracts(env.chain)
    authorizer = LocalSigner.generate()
    _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[6].private_key.get_secret_value())
    table = (
        '[channels]\nreceiver_authorizer_key_file = "authorizer.key"\n'
        'claim_interval_s = 0.5\nclaim_threshold = "0.02 USDC"\n'
    )
    config = _config(
        tmp_path,
        rpc_url=env.chain.rpc_url or "",
        token=env.asset.address,
        pay_to=env.merchant,
        extra=CHANNEL_ROUTE + table,
    )
    payer = env.new_payer()
    merchant_before = env.token.balance_of(env.merchant)

    async def pay(url: str) -> list[httpx.Response]:
        async with x402HttpxClient(_sdk_client(env, payer), timeout=60.0) as http:
            return [await http.get(f"{url}/api/data") for _ in range(3)]

    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
    ):
        responses = asyncio.run(pay(ready["url"]))
        assert [r.status_code for r in responses] == [200, 200, 200]
        # The server's own claimer (started on the ASGI lifespan) claims and settles.
        deadline = time.monotonic() + 90
        while env.token.balance_of(env.merchant) == merchant_before:
            assert time.monotonic() < deadline, "the background claimer never settled"
            time.sleep(0.5)
    assert env.token.balance_of(env.merchant) - merchant_before >= 2 * PRICE_ATOMIC


# ------------------------------------------------------------ config mistakes, one line each

DEAD_RPC = "http://127.0.0.1:9"
PAY_TO = "0x" + "ab" * 20
TOKEN = "0x" + "cd" * 20


def _serve(tmp_path: Path, extra: str, *flags: str) -> Any:
    _private(tmp_path / "relayer.key", SECRET_KEY)
    config = _config(tmp_path, rpc_url=DEAD_RPC, token=TOKEN, pay_to=PAY_TO, extra=extra)
    return run_farthing(
        ["paywall", "serve", "--config", str(config), *flags], env=cli_env(tmp_path / "data")
    )


def test_a_channel_route_without_a_channels_table_is_one_line(tmp_path: Path) -> None:
    _fails(_serve(tmp_path, CHANNEL_ROUTE), "routes[0] offers batch-settlement", "[channels]")


def test_a_missing_receiver_authorizer_is_one_line(tmp_path: Path) -> None:
    result = _serve(tmp_path, CHANNEL_ROUTE + "[channels]\nwithdraw_delay_s = 900\n")
    _fails(result, "receiver_authorizer_key_file", "--channel-authorizer-key-file")
    absent = _serve(
        tmp_path, CHANNEL_ROUTE + '[channels]\nreceiver_authorizer_key_file = "nowhere.key"\n'
    )
    _fails(absent, "nowhere.key")


def test_a_loose_receiver_authorizer_key_file_is_refused(tmp_path: Path) -> None:
    _private(tmp_path / "authorizer.key", SECRET_KEY, mode=0o644)
    table = CHANNEL_ROUTE + '[channels]\nreceiver_authorizer_key_file = "authorizer.key"\n'
    _fails(_serve(tmp_path, table), "authorizer.key", "chmod 600")
    # The flag reads its file by the same rule, and wins over the table.
    loose = _private(tmp_path / "flag.key", SECRET_KEY, mode=0o640)
    flagged = _serve(
        tmp_path, CHANNEL_ROUTE + "[channels]\n", "--channel-authorizer-key-file", str(loose)
    )
    _fails(flagged, "flag.key", "chmod 600")


@pytest.mark.parametrize(
    ("route", "needle"),
    [
        ('schemes = ["exact", "deferred"]', "unknown scheme 'deferred'"),
        ('schemes = "batch-settlement"', "schemes must be a list"),
        ("schemes = []", "schemes must be a list"),
        ('schemes = ["exact", "exact"]', "twice"),
    ],
)
def test_bad_schemes_are_one_line(tmp_path: Path, route: str, needle: str) -> None:
    table = f'[[routes]]\npath = "/a"\nprice = "0.01 USDC"\n{route}\n'
    _fails(_serve(tmp_path, table), "routes[0]", needle)


@pytest.mark.parametrize(
    ("channels", "needle"),
    [
        ("min_deposit = 0.5", "channels.min_deposit must be text"),
        ("withdraw_delay_s = 60", "channels.withdraw_delay_s must be 900"),
        ('withdraw_delay_s = "900"', "channels.withdraw_delay_s must be an integer"),
        ("claim_interval_s = -1", "channels.claim_interval_s must be positive"),
        ("surprise = 1", "[channels] has unknown keys ['surprise']"),
    ],
)
def test_bad_channel_settings_are_one_line(tmp_path: Path, channels: str, needle: str) -> None:
    _fails(_serve(tmp_path, CHANNEL_ROUTE + f"[channels]\n{channels}\n"), needle)


@pytest.mark.anvil
@pytest.mark.parametrize(
    ("min_deposit", "needle"),
    [
        ('"lots"', "channels.min_deposit: cannot read the price 'lots'"),
        ('"0.0000001 USDC"', "channels.min_deposit: "),
        ('"1 EUR"', "channels.min_deposit: no exchange rate for EUR"),
    ],
)
def test_a_min_deposit_that_is_not_a_price_is_one_line(
    chain_env: ChainEnv, tmp_path: Path, min_deposit: str, needle: str
) -> None:
    place_channel_contracts(chain_env.chain)
    _private(tmp_path / "relayer.key", SECRET_KEY)
    _private(tmp_path / "authorizer.key", SECRET_KEY)
    channels = f'[channels]\nreceiver_authorizer_key_file = "authorizer.key"\nmin_deposit = {min_deposit}\n'
    config = _config(
        tmp_path,
        rpc_url=chain_env.chain.rpc_url or "",
        token=chain_env.asset.address,
        pay_to=chain_env.merchant,
        extra=CHANNEL_ROUTE + channels,
    )
    result = run_farthing(["paywall", "serve", "--config", str(config)], env=cli_env(tmp_path))
    _fails(result, needle)


def _exact_only_facilitator(network: str) -> Starlette:
    """A Fake of a third-party facilitator that settles ``exact`` only (a seam we do not own)."""

    async def supported(request: Request) -> JSONResponse:
        return JSONResponse(
            {"kinds": [{"x402Version": 2, "scheme": "exact", "network": network}],
             "extensions": [], "signers": {}}
        )  # fmt: skip

    return Starlette(routes=[Route("/supported", supported)])


@pytest.mark.anvil
def test_a_remote_facilitator_without_channels_is_refused_at_start(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    place_channel_contracts(chain_env.chain)
    _private(tmp_path / "authorizer.key", SECRET_KEY)
    channels = '[channels]\nreceiver_authorizer_key_file = "authorizer.key"\n'
    config = tmp_path / "remote.toml"
    base = [
        "paywall", "serve", "--config", str(config), "--upstream", "http://127.0.0.1:9",
        "--pay-to", chain_env.merchant, "--token", chain_env.asset.address,
        "--rpc-url", chain_env.chain.rpc_url or "",
        "--database-url", f"sqlite:///{tmp_path / 'p.sqlite'}",
    ]  # fmt: skip
    with serve_in_thread(_exact_only_facilitator(chain_env.chain.network)) as url:
        config.write_text(f'facilitator_url = "{url}"\n' + CHANNEL_ROUTE + channels)
        result = run_farthing(base, env=cli_env(tmp_path))
    _fails(result, "does not list batch-settlement", chain_env.chain.network)
    dead = f"http://127.0.0.1:{free_port()}"
    config.write_text(f'facilitator_url = "{dead}"\n' + CHANNEL_ROUTE + channels)
    _fails(run_farthing(base, env=cli_env(tmp_path)), "cannot ask the facilitator", dead)


# ------------------------------------------------------------ init --channels


def test_init_channels_writes_a_channels_table_and_a_private_key(tmp_path: Path) -> None:
    out = tmp_path / "farthing.toml"
    args = [
        "paywall", "init", "--output", str(out), "--upstream", "http://127.0.0.1:4000",
        "--pay-to", PAY_TO, "--rpc-url", "http://127.0.0.1:8545", "--token", TOKEN,
        "--channels", "--withdraw-delay-s", "3600", "--json",
    ]  # fmt: skip
    result = run_farthing(args, env=cli_env(tmp_path / "data"))
    assert result.code == 0, result.stderr
    key_file = tmp_path / "authorizer.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    address = LocalSigner(key).address
    report = result.json()
    assert report["receiver_authorizer"] == address
    assert str(key_file) in report["written"]
    assert key.removeprefix("0x") not in result.stdout + result.stderr
    config = load_config(out)
    assert config.routes[0].schemes == ("exact", "batch-settlement")
    assert config.channels is not None
    assert config.channels.receiver_authorizer_key_file == key_file
    assert config.channels.withdraw_delay_s == 3600

    plain = tmp_path / "plain"
    plain.mkdir()
    without = [a for a in args if a not in ("--channels", "--json")]
    without[without.index(str(out))] = str(plain / "farthing.toml")
    assert run_farthing(without, env=cli_env(tmp_path / "data")).code == 0
    config = load_config(plain / "farthing.toml")
    assert config.channels is None and config.routes[0].schemes == ("exact",)
    assert not (plain / "authorizer.key").exists()
