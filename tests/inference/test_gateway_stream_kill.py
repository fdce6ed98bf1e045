"""A gateway killed with SIGKILL mid-stream loses none of what it had sent, and charges it once.

The channel is opened (deposit, one stream) through the gateway in this
process on the memory chain. Then the same SQLite channel store is served by
the gateway as its own process (``stream_gateway_process.py``, uvicorn on
127.0.0.1, the fake vLLM sending a token every 0.2 s). The buyer streams over
real HTTP, reads a few tokens, and the process is killed with SIGKILL: no
``finally`` runs. The channel row then holds as charged the price of what had
been sent up to the last checkpoint: at least what the buyer read before the
kill, at most all it ever received, never above the ceiling; the rest of the
hold lapses. A fresh process given the same voucher again answers the
corrective 402 with that state, and the next voucher is charged only its own
stream.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from farthing.inference.pricing import call_price_atomic
from farthing.inference.streaming import SseReader
from farthing.paywall.wire import unb64_json
from tests import zygote
from tests.conftest import free_port
from tests.inference.conftest import fake_vllm_process
from tests.inference.fake_vllm import FakeVllm
from tests.inference.test_gateway_metered import (
    DELAY_S,
    Metered,
    metered_fixture,  # noqa: F401 - the fixture, used by name
    signature,
)
from tests.inference.test_gateway_stream import PROMPT, Buyer, chat

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).with_name("stream_gateway_process.py")
TOKENS = 20
TOKEN_DELAY_S = 0.2
LEASE_S = 2.0
READ_BEFORE_KILL = 4


def start(config: Path) -> tuple[str, Any]:
    port = json.loads(config.read_text())["port"]
    process = zygote.spawn(
        [sys.executable, str(SCRIPT), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the gateway process did not start")
        time.sleep(0.05)


def text_tokens(data: str) -> int:
    if data == "[DONE]":
        return 0
    chunk = json.loads(data)
    return sum(c.get("delta", {}).get("content", "").count("tok") for c in chunk.get("choices", []))


async def test_a_gateway_killed_mid_stream_keeps_what_was_sent_charged_once(
    metered: Metered, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    buyer = Buyer(metered)
    app = metered.gateway(fake_vllm)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        per_1k = (await client.post("/v1/price", json=chat())).json()["price_per_1k_atomic"]
        opened, _ = await buyer.stream(client)  # the deposit, in this process
    assert opened.status_code == 200
    before = metered.store.get(metered.channel_id)
    assert before is not None and before.held == 0

    paced = ("--stream-tokens", str(TOKENS), "--stream-delay-s", str(TOKEN_DELAY_S))
    with fake_vllm_process("ok", *paced) as (upstream, _):
        await killed_mid_stream(metered, buyer, before, per_1k, tmp_path, upstream)


async def killed_mid_stream(
    metered: Metered, buyer: Buyer, before: Any, per_1k: int, tmp_path: Path, upstream: str
) -> None:
    env = metered.env
    config = tmp_path / "gateway.json"
    config.write_text(
        json.dumps(
            {
                "port": free_port(),
                "asset": {
                    "network": env.asset.network,
                    "address": env.asset.address,
                    "decimals": env.asset.decimals,
                    "name": env.asset.name,
                    "version": env.asset.version,
                    "symbol": env.asset.symbol,
                },
                "channel_store_url": f"sqlite:///{tmp_path / 'gateway-channels.sqlite'}",
                "chain_id": env.chain.chain_id,
                "payment_store": str(tmp_path / "process-payments.sqlite"),
                "authorizer_key": metered.authorizer.private_key.get_secret_value(),
                "pay_to": env.merchant,
                "withdraw_delay_s": DELAY_S,
                "charge_lease_s": LEASE_S,
                "upstream_url": upstream,
            }
        )
    )
    url, process = start(config)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            challenge = await client.post("/v1/chat/completions", json=chat())
            (offer,) = unb64_json(challenge.headers["payment-required"])["accepts"]
            ceiling = int(offer["amount"])
            buyer.cumulative = before.charged
            headers = signature(offer, buyer.payload(ceiling))
            reader, read, after_kill = SseReader(), 0, 0
            async with client.stream(
                "POST", "/v1/chat/completions", json=chat(), headers=headers
            ) as answer:
                assert answer.status_code == 200
                chunks = answer.aiter_raw()
                async for chunk in chunks:
                    read += sum(text_tokens(e.data) for e in reader.feed(chunk))
                    if read >= READ_BEFORE_KILL:
                        break
                await anyio.sleep(0.3)  # a checkpoint (every 0.1 s) passes, a token or two is sent
                process.send_signal(signal.SIGKILL)
                process.wait()
                try:
                    async for chunk in chunks:
                        after_kill += sum(text_tokens(e.data) for e in reader.feed(chunk))
                except httpx.HTTPError:
                    pass  # the connection died with the process
    finally:
        process.kill()
        process.wait()
    received = read + after_kill
    assert received < TOKENS  # it was cut
    killed = metered.store.get(metered.channel_id)
    assert killed is not None
    charged = killed.charged - before.charged
    # Not lost: what was read before the kill is charged; never more than was received.

    def price(tokens: int) -> int:
        return call_price_atomic(PROMPT + tokens, per_1k)

    assert price(READ_BEFORE_KILL) <= charged <= price(received) <= ceiling
    assert killed.held > 0  # the rest of the ceiling, held until the lease lapses

    # The same voucher again, at a fresh process once the hold lapsed: the
    # corrective 402 carries the state with that charge, so it is never paid twice.
    await anyio.sleep(max(0.0, (killed.held_until_ns - time.time_ns()) / 1e9) + 0.1)
    url, process = start(config)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            again = await client.post("/v1/chat/completions", json=chat(), headers=headers)
            assert again.status_code == 402, again.text
            terms = unb64_json(again.headers["payment-required"])
            assert terms["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
            (corrected,) = terms["accepts"]
            state = corrected["extra"]["channelState"]
            assert int(state["chargedCumulativeAmount"]) == killed.charged
            buyer.cumulative = killed.charged
            fresh = signature(offer, buyer.payload(ceiling))
            whole = await client.post("/v1/chat/completions", json=chat(), headers=fresh)
            assert whole.status_code == 200, whole.text
    finally:
        process.kill()
        process.wait()
    final = metered.store.get(metered.channel_id)
    assert final is not None and final.held == 0
    assert final.charged == killed.charged + price(TOKENS)
    assert json.loads(base64.b64decode(headers["payment-signature"]))["accepted"] == offer
