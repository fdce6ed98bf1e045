"""Against a real vLLM (CPU, the tiny model): a streamed chat paid through a channel is charged exactly its usage.

The session's vLLM (``vllm`` fixture) sits behind the real gateway and
paywall with channels on the memory chain. The buyer deposits and signs a
voucher for the quote (prompt plus ``max_tokens``), asks for the usage on
every chunk, and reads the stream: the completion tokens counted chunk by
chunk add up to vLLM's final ``usage``, the prompt vLLM counted is the one
the gateway quoted, the charge in the last event is the price of that usage
at the quoted price per 1k, and the claim moves exactly that on chain.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from farthing.inference import Gateway, GatewayPayment, InferenceSettings
from farthing.inference.pricing import call_price_atomic
from farthing.inference.streaming import PAYMENT_EVENT, SseReader
from farthing.paywall import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.wire import unb64_json
from tests.conftest import VllmProcess
from tests.inference.conftest import client_for
from tests.inference.test_gateway_metered import (
    DELAY_S,
    DEPOSIT,
    Metered,
    metered_fixture,  # noqa: F401 - the fixture, used by name
    signature,
)

pytestmark = [pytest.mark.vllm, pytest.mark.anyio]

MAX_TOKENS = 48


def gateway(vllm: VllmProcess, metered: Metered) -> Gateway:
    settings = InferenceSettings(
        upstream_url=vllm.base_url,
        request_timeout_s=120.0,
        upstream_timeout_s=120.0,
        max_tokens=MAX_TOKENS,
        max_tokens_max=MAX_TOKENS,
        max_tokens_default=MAX_TOKENS,
        metrics_refresh_s=0.0,
    )
    env = metered.env
    payment = GatewayPayment(
        facilitator=metered.facilitator,
        store=env.store,
        asset=env.asset,
        pay_to=env.merchant,
        books=LedgerRevenueBook(env.ledger),
        channels=ChannelOptions(
            metered.store, metered.authorizer, withdraw_delay_s=DELAY_S, claim_in_background=False
        ),
    )
    return Gateway(settings, payment=payment)


async def test_a_streamed_chat_is_charged_vllms_usage_and_the_claim_moves_exactly_that(
    vllm: VllmProcess, metered: Metered
) -> None:
    env = metered.env
    app = gateway(vllm, metered)
    body: dict[str, Any] = {
        "model": vllm.model,
        "messages": [{"role": "user", "content": "Tell the farthing's story."}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    async with client_for(app) as client:
        challenge = await client.post("/v1/chat/completions", json=body)
        assert challenge.status_code == 402, challenge.text
        (offer,) = unb64_json(challenge.headers["payment-required"])["accepts"]
        assert offer["scheme"] == "batch-settlement"
        ceiling = int(offer["amount"])
        headers = signature(offer, metered.deposit(DEPOSIT, ceiling))
        answer = await client.post("/v1/chat/completions", json=body, headers=headers)
    await app.aclose()
    assert answer.status_code == 200, answer.text
    per_1k = int(answer.headers["x-farthing-price-per-1k-atomic"])
    quoted_prompt = int(answer.headers["x-farthing-tokens-priced"]) - MAX_TOKENS

    events = SseReader().feed(answer.content)
    chunks = [json.loads(e.data) for e in events if e.name is None and e.data != "[DONE]"]
    (charge_event,) = [json.loads(e.data) for e in events if e.name == PAYMENT_EVENT]
    assert events[-1].data == "[DONE]"
    usage = chunks[-1]["usage"]  # vLLM's own count, at the end
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens"] == quoted_prompt  # the gateway priced what vLLM counted
    # The tokens streamed are vLLM's usage: the running count each event carries
    # only grows, and the last event with text carries the final completion_tokens.
    # (A loaded vLLM may put two tokens in one event, so events are not counted.)
    counts = [c["usage"]["completion_tokens"] for c in chunks if c["choices"]]
    assert 0 < usage["completion_tokens"] <= MAX_TOKENS
    assert counts == sorted(counts) and counts[0] >= 0
    assert counts[-1] == usage["completion_tokens"]
    assert len(set(counts)) > 1

    charge = call_price_atomic(usage["prompt_tokens"] + usage["completion_tokens"], per_1k)
    receipt = charge_event["payment_response"]
    assert int(receipt["extra"]["chargedAmount"]) == charge <= ceiling
    record = metered.store.get(metered.channel_id)
    assert record is not None and (record.charged, record.held) == (charge, 0)

    claimer = ChannelClaimer(metered.store, metered.facilitator, metered.authorizer)
    report = await claimer.tick(force=True)
    assert report.failures == () and report.settled == charge
    assert env.balance(env.merchant) == charge  # exactly the usage's price, on chain
