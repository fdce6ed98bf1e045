"""``farthing paywall serve --facilitator-url`` passes the facilitator's API key, and a wrong key moves nothing.

Both sides are real processes on a module anvil: ``farthing facilitator
serve`` with ``--api-key-file``, ``--asset`` and ``--payee``, and ``farthing
paywall serve`` in front of an upstream with ``facilitator_url`` and
``facilitator_token_file`` in its TOML. The official x402 SDK client pays an
article: with the right key the merchant is paid the price; with a wrong one
the paywall answers 503 (the facilitator refused the caller, which is not a
payment outcome) and no money moves.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from x402.http.clients import x402HttpxClient

from tests import zygote
from tests.conftest import cli_env, ready_line
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.facilitator_process import API_KEY, private_file, running_facilitator
from tests.paywall.test_x402_sdk import sdk_client

pytestmark = pytest.mark.anvil


@contextmanager
def _paywall(env: ChainEnv, tmp_path: Path, facilitator_url: str, key: str) -> Iterator[str]:
    private_file(tmp_path / "facilitator.key", key)
    config = tmp_path / "paywall.toml"
    config.write_text(
        "\n".join(
            [
                f'pay_to = "{env.merchant}"',
                f'token = "{env.asset.address}"',
                f'rpc_url = "{env.chain.rpc_url}"',
                f'facilitator_url = "{facilitator_url}"',
                'facilitator_token_file = "facilitator.key"',
                f'database_url = "sqlite:///{tmp_path / "payments.sqlite"}"',
            ]
        )
    )
    with serve_in_thread(inner_app()) as upstream:
        process = zygote.spawn(
            [
                sys.executable, "-m", "farthing", "paywall", "serve", "--json",
                "--config", str(config), "--upstream", upstream,
                "--route", "GET /api/** 0.01 USDC", "--port", "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(tmp_path / "data"),
        )  # fmt: skip
        try:
            yield str(ready_line(process, 120)["url"])
        finally:
            process.terminate()
            try:
                process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def _pay(env: ChainEnv, url: str) -> httpx.Response:
    payer = env.new_payer()

    async def go() -> httpx.Response:
        async with x402HttpxClient(sdk_client(env, payer), timeout=60.0) as http:
            return await http.get(f"{url}/api/data?n=1")

    response: httpx.Response = asyncio.run(go())
    return response


@pytest.mark.parametrize("right_key", [True, False], ids=["right key", "wrong key"])
def test_the_paywall_passes_the_facilitators_api_key(
    chain_env: ChainEnv, tmp_path: Path, right_key: bool
) -> None:
    env = chain_env
    relayer = private_file(tmp_path / "relayer.key", env.relayer.private_key.get_secret_value())
    api_key = private_file(tmp_path / "api.key", API_KEY)
    before = env.token.balance_of(env.merchant)
    options = (
        "--api-key-file",
        str(api_key),
        "--asset",
        env.asset.address,
        "--payee",
        env.merchant,
    )
    given = API_KEY if right_key else API_KEY[::-1]
    with (
        running_facilitator(env.chain.rpc_url or "", relayer, tmp_path / "fac", *options) as fac,
        _paywall(env, tmp_path, fac.url, given) as url,
    ):
        response = _pay(env, url)
    if right_key:
        assert response.status_code == 200, response.text
        assert response.json()["secret"] == "paid-data"
        assert env.token.balance_of(env.merchant) == before + PRICE_ATOMIC
    else:
        assert response.status_code == 503, response.text
        assert "paid-data" not in response.text
        assert env.token.balance_of(env.merchant) == before
