"""A streamed chat through the paid gateway is relayed as vLLM sends it and charged its real usage when it ends.

Real pieces: the gateway and its paywall on the in-process memory chain with
our escrow contracts, a SQLite channel store, the local facilitator that
takes the deposit and later claims on chain. Only vLLM is the fake
(``fake_vllm.py``, which streams like vLLM, one chunk per token, and
misbehaves on demand). The buyer signs its own deposit and vouchers, so each
voucher's ceiling is known; the charge is read from the stream's last event,
the channel row and the merchant's balance after the claim. ``exact`` is
refused for a stream with one line, its payment released unsettled.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from farthing.inference import Gateway
from farthing.inference.gateway import METERED_SCHEMES
from farthing.inference.pricing import call_price_atomic
from farthing.inference.streaming import PAYMENT_EVENT, SseReader
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.paywall.schemes.metering import METER_ASKED, METER_EXTENSION
from farthing.paywall.wire import unb64_json
from tests.inference.conftest import PaidEnv, client_for, fake_upstream, fast_settings
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens
from tests.inference.test_gateway_metered import (
    DEPOSIT,
    MESSAGES,
    Metered,
    metered_fixture,  # noqa: F401 - the fixture, used by name
    signature,
)

pytestmark = pytest.mark.anyio

MAX_TOKENS = 40
PROMPT = prompt_tokens(MESSAGES)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "stream": True, **extra}


def events(body: bytes) -> list[tuple[str | None, str]]:
    reader = SseReader()
    return [(e.name, e.data) for e in reader.feed(body)]


def payment_event(body: bytes) -> dict[str, Any]:
    found = [json.loads(data) for name, data in events(body) if name == PAYMENT_EVENT]
    assert len(found) == 1, body
    response: dict[str, Any] = found[0]["payment_response"]
    return response


def text_of(body: bytes) -> str:
    out = []
    for name, data in events(body):
        if name is None and data != "[DONE]":
            for choice in json.loads(data).get("choices", []):
                out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)


class Buyer:
    """One channel to the gateway: a deposit first, then vouchers built on what was charged."""

    def __init__(self, metered: Metered) -> None:
        self.metered = metered
        self.cumulative = 0  # charged so far, as the seller's last state said
        self.deposited = False

    async def offer(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        challenge = await client.post("/v1/chat/completions", json=body)
        assert challenge.status_code == 402, challenge.text
        accepts = unb64_json(challenge.headers["payment-required"])["accepts"]
        assert [a["scheme"] for a in accepts] == ["batch-settlement"]  # a stream: metered only
        assert [a["scheme"] for a in challenge.json()["accepts"]] == ["batch-settlement"]
        offer: dict[str, Any] = accepts[0]
        return offer

    def payload(self, ceiling: int) -> dict[str, Any]:
        target = self.cumulative + ceiling
        if self.deposited:
            return self.metered.voucher(target)
        self.deposited = True
        return self.metered.deposit(DEPOSIT, target)

    async def stream(
        self, client: httpx.AsyncClient, body: dict[str, Any] | None = None
    ) -> tuple[httpx.Response, int]:
        body = body or chat()
        offer = await self.offer(client, body)
        ceiling = int(offer["amount"])
        headers = signature(offer, self.payload(ceiling))
        answer = await client.post("/v1/chat/completions", json=body, headers=headers)
        if answer.status_code == 200 and PAYMENT_EVENT.encode() in answer.content:
            state = payment_event(answer.content)["extra"]["channelState"]
            self.cumulative = int(state["chargedCumulativeAmount"])
        return answer, ceiling


def price(tokens: int, quote: dict[str, Any]) -> int:
    return call_price_atomic(tokens, quote["price_per_1k_atomic"])


async def test_a_free_gateway_streams_as_asked_without_charging(fake_vllm: FakeVllm) -> None:
    settings = fast_settings()
    app = Gateway(settings, upstream=fake_upstream(fake_vllm, settings))
    async with client_for(app) as client:
        plain = await client.post("/v1/chat/completions", json=chat())
        assert plain.status_code == 200, plain.text
        assert plain.headers["content-type"].startswith("text/event-stream")
        assert text_of(plain.content) == "tok " * 5
        assert b'"usage"' not in plain.content  # the client asked for none
        assert plain.content.endswith(b"data: [DONE]\n\n")
        assert PAYMENT_EVENT.encode() not in plain.content
        asked = chat(stream_options={"include_usage": True})
        usage = await client.post("/v1/chat/completions", json=asked)
        chunks = [json.loads(d) for n, d in events(usage.content) if d != "[DONE]"]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
        assert all(c["usage"] is None for c in chunks[:-1])  # as OpenAI sends them
        every = chat(stream_options={"continuous_usage_stats": True})
        counted = await client.post("/v1/chat/completions", json=every)
        chunks = [json.loads(d) for n, d in events(counted.content) if d != "[DONE]"]
        assert [c["usage"]["completion_tokens"] for c in chunks] == [0, 1, 2, 3, 4, 5, 5]
    # The upstream was always asked for the usage, whatever the client asked.
    for body in fake_vllm.chat_bodies:
        assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


async def test_bad_stream_fields_are_refused_with_one_line(fake_vllm: FakeVllm) -> None:
    settings = fast_settings()
    app = Gateway(settings, upstream=fake_upstream(fake_vllm, settings))
    bad = [
        {"stream": "yes"},
        {"stream": False, "stream_options": {"include_usage": True}},
        {"stream_options": {"include_usage": "true"}},
        {"stream_options": {"include_usage": True, "other": True}},
        {"stream_options": ["include_usage"]},
        {"best_of": 2},
    ]
    async with client_for(app) as client:
        for extra in bad:
            answer = await client.post("/v1/chat/completions", json=chat(**extra))
            assert answer.status_code == 400, (extra, answer.text)
            assert answer.json()["error"]["code"] in ("invalid_stream", "stream_best_of")
    assert fake_vllm.chat_bodies == []


async def test_an_exact_only_gateway_refuses_to_quote_a_stream(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    settings = fast_settings()
    app = paid_env.gateway(settings, fake_upstream(fake_vllm, settings))
    async with client_for(app) as client:
        answer = await client.post("/v1/chat/completions", json=chat())
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "stream_needs_metered_scheme"
        assert "batch-settlement" in error["message"] and "exact" in error["message"]
        # Not streamed, it is offered as before, exact included.
        plain = await client.post("/v1/chat/completions", json={**chat(), "stream": False})
        assert plain.status_code == 402


async def test_a_stream_through_a_channel_is_charged_its_usage_and_the_rest_released(
    metered: Metered, fake_vllm: FakeVllm
) -> None:
    env = metered.env
    app = metered.gateway(fake_vllm)
    buyer = Buyer(metered)
    charges = []
    async with client_for(app) as client:
        quote = (await client.post("/v1/price", json=chat())).json()
        used = price(PROMPT + 5, quote)
        for _ in range(2):
            answer, ceiling = await buyer.stream(client)
            assert answer.status_code == 200, answer.text
            assert ceiling == int(quote["amount"]) and used < ceiling
            assert "payment-response" not in answer.headers  # sent before the charge was known
            assert "private" in answer.headers["cache-control"]
            assert text_of(answer.content) == "tok " * 5
            tail = answer.content.rsplit(b"\n\n", 3)
            assert tail[-3].startswith(f"event: {PAYMENT_EVENT}".encode())
            assert answer.content.endswith(b"data: [DONE]\n\n")
            receipt = payment_event(answer.content)
            assert receipt["success"] is True and receipt["payer"] == env.payer.address
            charges.append(int(receipt["extra"]["chargedAmount"]))
            assert receipt["amount"] == receipt["extra"]["chargedAmount"]
    assert charges == [used, used]
    record = metered.store.get(metered.channel_id)
    assert record is not None
    assert (record.charged, record.held) == (2 * used, 0)  # the rest of each ceiling released
    assert metered.config.payer == env.payer.address
    claimer = ChannelClaimer(metered.store, metered.facilitator, metered.authorizer)
    report = await claimer.tick(force=True)
    assert report.failures == () and report.settled == 2 * used
    assert env.balance(env.merchant) == 2 * used  # exactly the usage moved on chain


async def test_an_exact_payment_for_a_stream_is_refused_and_not_settled(
    metered: Metered, fake_vllm: FakeVllm
) -> None:
    env = metered.env
    app = metered.gateway(fake_vllm)
    async with client_for(app) as client:
        unstreamed = await client.post("/v1/chat/completions", json={**chat(), "stream": False})
        header, _ = env.pay(unstreamed)  # exact's terms, from a 402 that still offers it
        answer = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "stream_needs_metered_scheme"
    assert set(METERED_SCHEMES) <= set(error["message"].replace(",", " ").split()) | {"upto"}
    assert env.balance(env.merchant) == 0
    assert fake_vllm.chat_bodies == []  # nothing generated


def test_the_meter_is_asked_for_under_the_paywalls_name() -> None:
    from farthing.inference import gateway

    assert (gateway._METER_EXTENSION, gateway._METER_ASKED) == (METER_EXTENSION, METER_ASKED)


def test_the_event_reader_frames_bounds_and_splits_anywhere() -> None:
    from farthing.inference.errors import InferenceUpstreamError

    wire = (
        b": comment\r\nevent: named\r\ndata: one\r\ndata: two\r\n\r\n"
        b'data: {"text":"\\ud800"}\n\nid: 7\ndata: [DONE]\n\n'
    )
    whole = [(e.name, e.data) for e in SseReader().feed(wire)]
    assert whole == [("named", "one\ntwo"), (None, '{"text":"\\ud800"}'), (None, "[DONE]")]
    reader = SseReader()
    split = [(e.name, e.data) for i in range(len(wire)) for e in reader.feed(wire[i : i + 1])]
    assert split == whole
    with pytest.raises(InferenceUpstreamError):
        SseReader(line_bytes_max=64).feed(b"data: " + b"x" * 100)
    with pytest.raises(InferenceUpstreamError):
        SseReader(line_bytes_max=64).feed(b"data: xxxxxxxxxx\n" * 10)


def test_the_agents_watch_finds_the_charge_event_and_nothing_else() -> None:
    from farthing.agents.streamed import _Watch

    seen: list[Any] = []
    watch = _Watch(lambda answer: seen.append(answer.settlement))
    forged = b'data: {"choices":[{"delta":{"content":"event: payment-response\\n"}}]}\n\n'
    long_line = b"data: " + b"x" * 100_000 + b"event: payment-response\n\n"
    real = b'event: payment-response\ndata: {"payment_response":{"amount":"7"}}\n\n'
    found = [watch.feed(wire[i : i + 7]) for wire in (forged, long_line, real)
             for i in range(0, len(wire), 7)]  # fmt: skip
    assert found.count(True) == 1
    assert watch.settlement == {"amount": "7"}
    watch.conclude()
    watch.conclude()
    assert seen == [{"amount": "7"}]  # booked once
