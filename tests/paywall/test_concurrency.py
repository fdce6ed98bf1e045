"""One payment sent 20 times at once, to two server processes sharing a SQLite file, is settled exactly once.

Two real paywall processes (``server_process.py``: uvicorn, the middleware,
the in-process facilitator, each with its own relayer key) share one payment
database. Twenty copies of the same ``PAYMENT-SIGNATURE`` go out concurrently,
ten to each; exactly one gets the content, the other nineteen get 503
``payment_in_progress`` (while it settles) or 402 ``nonce_already_used``
(after), and the chain shows one transfer of the price.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import zygote
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, challenge_of, sign_for

pytestmark = pytest.mark.anvil

SERVER = Path(__file__).with_name("server_process.py")


@pytest.fixture
def two_servers(chain_env: ChainEnv, tmp_path: Path) -> Iterator[list[str]]:
    database = tmp_path / "shared-payments.sqlite"
    processes = []
    urls = []
    try:
        for relayer_index in (3, 4):
            process = zygote.spawn(
                [
                    sys.executable,
                    str(SERVER),
                    chain_env.chain.rpc_url or "",
                    chain_env.asset.address,
                    chain_env.merchant,
                    str(database),
                    str(relayer_index),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"server did not start: {process.communicate(timeout=10)[1]}")
            urls.append(json.loads(line)["url"])
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def test_the_same_payment_twenty_times_at_once_settles_once(
    chain_env: ChainEnv, two_servers: list[str]
) -> None:
    payer = chain_env.new_payer()
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    block_before = chain_env.chain.block_number()

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            challenge = challenge_of(await client.get(f"{two_servers[0]}/api/data"))
            header = sign_for(challenge["accepts"][0], payer)
            requests = [
                client.get(f"{two_servers[i % 2]}/api/data", headers={"PAYMENT-SIGNATURE": header})
                for i in range(20)
            ]
            return list(await asyncio.gather(*requests))

    responses = asyncio.run(go())
    statuses = sorted(r.status_code for r in responses)
    # A copy that arrives while the winner settles is told to retry (503);
    # one that arrives after delivery is told the payment is spent (402).
    assert statuses.count(200) == 1, [r.text for r in responses]
    refused: list[Any] = [r.json()["error"] for r in responses if r.status_code != 200]
    assert set(refused) <= {"nonce_already_used", "payment_in_progress"} and len(refused) == 19
    assert all(r.status_code in (402, 503) for r in responses if r.status_code != 200)
    assert all("paid-data" not in r.text for r in responses if r.status_code != 200)
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    transfers = chain_env.token.transfer_events(block_before + 1, addresses=[payer.address])
    assert [(t.from_address, t.value) for t in transfers] == [(payer.address, PRICE_ATOMIC)]
