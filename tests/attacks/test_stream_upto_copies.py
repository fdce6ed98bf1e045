"""Eight copies of one ``upto`` permit sent at once as streamed chats get one stream and one settlement.

Real pieces: the paid gateway (``upto``) with its paywall, payment database
and local facilitator on the memory chain with our Permit2 and proxy; only
vLLM is the fake. The same ``PAYMENT-SIGNATURE`` on eight concurrent
``"stream": true`` requests: exactly one is streamed (its final event the
one successful settlement), every other copy is a 503 ``payment_in_progress``
or a 402 with no event in it; the chain moves the one stream's usage once,
never the ceiling, and a copy sent afterwards gets no stream either.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from farthing.inference.streaming import PAYMENT_EVENT, SseReader
from farthing.paywall.schemes.upto.client import payment_header, upto_payment
from farthing.paywall.schemes.upto.wire import UptoRequirements, parse_requirements
from farthing.paywall.wire import unb64_json
from tests.agents.conftest import World
from tests.inference.conftest import fake_vllm
from tests.inference.fake_vllm import FakeVllm
from tests.inference.test_gateway_upto import URL, chat, prices, upto_gateway, upto_world

pytestmark = pytest.mark.anyio
__all__ = ["fake_vllm", "upto_world"]

COPIES = 8


async def test_copies_of_one_permit_get_one_stream_and_one_settlement(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    gateway = upto_gateway(world, fake_vllm)
    body = chat(stream=True)
    ceiling, used = await prices(gateway, body)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        challenge = await http.post(URL, json=body)
        assert challenge.status_code == 402
        entry = next(
            a
            for a in unb64_json(challenge.headers["payment-required"])["accepts"]
            if a["scheme"] == "upto"
        )
        offer = parse_requirements(entry)
        assert isinstance(offer, UptoRequirements) and offer.amount == ceiling
        payment = upto_payment(offer, world.agent, now=world.chain.timestamp())
        headers = {"PAYMENT-SIGNATURE": payment_header(payment)}
        before = world.token.balance_of(world.agent.address)
        answers: list[httpx.Response] = []

        async def one() -> None:
            answers.append(await http.post(URL, json=body, headers=headers))

        async with anyio.create_task_group() as group:
            for _ in range(COPIES):
                group.start_soon(one)
        later = await http.post(URL, json=body, headers=headers)

    streamed = [a for a in answers if a.status_code == 200]
    assert len(streamed) == 1, [(a.status_code, a.text[:80]) for a in answers]
    refused: list[Any] = [a for a in answers if a.status_code != 200]
    assert {a.status_code for a in refused} <= {402, 503}, [a.text for a in refused]
    assert all("data:" not in a.text for a in refused)
    receipts = [
        json.loads(e.data)["payment_response"]
        for e in SseReader().feed(streamed[0].content)
        if e.name == PAYMENT_EVENT
    ]
    assert len(receipts) == 1 and receipts[0]["success"] is True
    assert receipts[0]["amount"] == str(used) and 0 < used < ceiling
    assert later.status_code == 402 and "data:" not in later.text
    assert world.token.balance_of(world.agent.address) == before - used
    assert world.token.balance_of(world.merchant) == used
