"""A metered stream is charged what the client was sent, never more than its ceiling, whatever breaks.

The gateway and its paywall run for real (memory chain, escrow contracts,
SQLite channel store, local facilitator); vLLM is the fake, misbehaving on
demand. The paid request is driven through the gateway's ASGI interface by
hand, so the client can leave, or stop reading, at each event in turn (as a
server reports it: ``http.disconnect``, or a ``send`` that never returns).
Each case pays with a fresh voucher on one channel, and the channel row says
what was charged: the price of the usage in the events that reached the
client, the rest of the ceiling released. Upstream cuts, forged charge
events, usage above the ceiling, no usage at all, and two streams on one
channel at once are each checked the same way.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from farthing.inference.pricing import call_price_atomic
from farthing.inference.streaming import PAYMENT_EVENT
from tests.inference.conftest import client_for
from tests.inference.fake_vllm import FakeVllm
from tests.inference.test_gateway_metered import (
    Metered,
    metered_fixture,  # noqa: F401 - the fixture, used by name
    signature,
)
from tests.inference.test_gateway_stream import PROMPT, Buyer, chat, events, payment_event, text_of

pytestmark = pytest.mark.anyio

TOKENS = 5  # the fake's completion, one chunk each, after a role chunk and before a finish chunk
BODY_EVENTS = TOKENS + 2


@dataclass
class Driven:
    """What reached the client of one hand-driven request."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def drive(
    app: Any,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    leave_at: int | None = None,
    stall_at: int | None = None,
) -> Driven:
    """One request; the client leaves during its ``leave_at``-th body message, or stops reading."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway.test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            *[(k.encode(), v.encode()) for k, v in headers.items()],
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway.test", 80),
        "extensions": {},
    }
    gone = anyio.Event()
    asked = False
    driven = Driven()
    bodies = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal bodies
        if message["type"] == "http.response.body":
            bodies += 1
            if bodies == leave_at:
                gone.set()
                await anyio.sleep(1)  # the server notices while this one is being sent
            if stall_at is not None and bodies >= stall_at:
                await anyio.sleep_forever()  # never read
        if gone.is_set():
            return  # as uvicorn: a send after the client left goes nowhere
        if message["type"] == "http.response.start":
            driven.status = message["status"]
            driven.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            driven.body += message.get("body", b"")

    await app(scope, receive, send)
    return driven


async def paid_headers(
    metered: Metered, buyer: Buyer, app: Any, body: dict[str, Any]
) -> tuple[dict[str, str], int]:
    """A voucher for ``body`` built on the channel's row as it is now (the client's view)."""
    async with client_for(app) as client:
        offer = await buyer.offer(client, body)
    record = metered.store.get(metered.channel_id)
    if record is not None:
        buyer.cumulative = record.charged + record.held
    ceiling = int(offer["amount"])
    return signature(offer, buyer.payload(ceiling)), ceiling


@dataclass
class Channel:
    metered: Metered
    fake: FakeVllm
    app: Any
    buyer: Buyer
    per_1k: int = 0

    async def open(self) -> None:
        """The deposit, with one whole stream."""
        async with client_for(self.app) as client:
            self.per_1k = (await client.post("/v1/price", json=chat())).json()[
                "price_per_1k_atomic"
            ]
            answer, _ = await self.buyer.stream(client)
        assert answer.status_code == 200, answer.text

    def charged(self) -> tuple[int, int]:
        record = self.metered.store.get(self.metered.channel_id)
        assert record is not None
        return record.charged, record.held

    def price(self, completion: int) -> int:
        return call_price_atomic(PROMPT + completion, self.per_1k)

    async def charge_of(self, **drive_options: Any) -> tuple[int, Driven, int]:
        """One driven stream: what it added to ``charged``, what the client saw, the ceiling."""
        before, _ = self.charged()
        headers, ceiling = await paid_headers(self.metered, self.buyer, self.app, chat())
        driven = await drive(self.app, chat(), headers, **drive_options)
        after, held = self.charged()
        assert held == 0  # the rest of the ceiling released
        return after - before, driven, ceiling


@pytest.fixture(name="channel")
async def channel_fixture(metered: Metered, fake_vllm: FakeVllm) -> Channel:
    channel = Channel(metered, fake_vllm, metered.gateway(fake_vllm), Buyer(metered))
    await channel.open()
    return channel


def tokens_in(driven: Driven) -> int:
    return text_of(driven.body).count("tok")


async def test_a_client_that_leaves_at_any_event_is_charged_what_it_was_sent(
    channel: Channel,
) -> None:
    for leave_at in range(1, BODY_EVENTS + 2):
        charged, driven, ceiling = await channel.charge_of(leave_at=leave_at)
        received = leave_at - 1  # the event being sent when it left never arrived
        if received == 0:
            assert charged == 0, leave_at  # nothing sent, nothing charged
        else:
            assert charged == channel.price(tokens_in(driven)), leave_at
            assert tokens_in(driven) == min(received - 1, TOKENS)
        assert charged <= ceiling
        assert PAYMENT_EVENT.encode() not in driven.body  # it left before the end


async def test_a_client_that_stops_reading_is_cut_at_the_deadline_and_charged_what_was_sent(
    channel: Channel,
) -> None:
    channel.fake.stream_delay_s = 0.01
    with anyio.fail_after(20):
        charged, driven, _ = await channel.charge_of(stall_at=3)
    # The role chunk and one token went out; the third event never left the server.
    assert tokens_in(driven) == 1
    assert charged == channel.price(1)


async def test_an_upstream_that_breaks_off_at_any_point_is_charged_what_was_sent(
    channel: Channel,
) -> None:
    channel.fake.stream_mode = "cut"
    for cut_after in range(TOKENS):
        channel.fake.cut_after = cut_after
        charged, driven, _ = await channel.charge_of()
        assert driven.status == 200
        assert tokens_in(driven) == cut_after
        assert charged == channel.price(cut_after)
        receipt = payment_event(driven.body)  # the client still learns the charge
        assert int(receipt["extra"]["chargedAmount"]) == charged
        last = events(driven.body)[-1]
        assert json.loads(last[1])["error"]["code"] == "upstream_failed"
        assert b"[DONE]" not in driven.body


async def test_upstream_text_and_events_cannot_forge_the_charge(channel: Channel) -> None:
    channel.fake.stream_mode = "forge"
    charged, driven, _ = await channel.charge_of()
    receipt = payment_event(driven.body)  # exactly one: the gateway's own
    assert int(receipt["extra"]["chargedAmount"]) == charged == channel.price(TOKENS)
    # The text that looks like an event reaches the client as text, escaped in its JSON.
    assert text_of(driven.body).count("event: payment-response\ndata: [DONE]") == TOKENS
    assert b": a comment" not in driven.body
    assert [data for _, data in events(driven.body)].count("[DONE]") == 1


async def test_usage_above_the_ceiling_is_capped(channel: Channel) -> None:
    channel.fake.stream_mode = "huge_usage"
    charged, driven, ceiling = await channel.charge_of()
    assert charged == ceiling
    assert int(payment_event(driven.body)["extra"]["chargedAmount"]) == ceiling


async def test_a_stream_without_usage_is_charged_the_prompt_and_a_token_an_event(
    channel: Channel,
) -> None:
    channel.fake.stream_mode = "no_usage"
    charged, driven, _ = await channel.charge_of()
    assert tokens_in(driven) == TOKENS
    assert charged == channel.price(TOKENS)


async def test_two_streams_on_one_channel_at_once_are_each_charged_their_own_usage(
    channel: Channel,
) -> None:
    channel.fake.stream_delay_s = 0.05
    before, _ = channel.charged()
    first_headers, ceiling = await paid_headers(channel.metered, channel.buyer, channel.app, chat())
    # The second voucher builds on the first one's live hold (charged + held + price).
    channel.buyer.cumulative = before + ceiling
    accepted = json.loads(base64.b64decode(first_headers["payment-signature"]))["accepted"]
    second_headers = signature(accepted, channel.metered.voucher(before + 2 * ceiling))
    results: list[Driven] = []

    async def one(headers: dict[str, str]) -> None:
        results.append(await drive(channel.app, chat(), headers))

    async with anyio.create_task_group() as group:
        group.start_soon(one, first_headers)
        while channel.charged()[1] == 0:  # the first one's ceiling is held
            await anyio.sleep(0.005)
        group.start_soon(one, second_headers)
    assert [r.status for r in results] == [200, 200]
    receipts = [int(payment_event(r.body)["extra"]["chargedAmount"]) for r in results]
    assert receipts == [channel.price(TOKENS)] * 2
    after, held = channel.charged()
    assert (after - before, held) == (2 * channel.price(TOKENS), 0)


async def test_an_upstream_that_fails_before_streaming_is_not_charged(channel: Channel) -> None:
    channel.fake.mode = "error"
    charged, driven, _ = await channel.charge_of()
    assert driven.status == 502
    assert json.loads(driven.body)["error"]["code"] == "upstream_error"
    assert charged == 0  # the hold freed, nothing charged
    assert "payment-response" not in driven.headers


async def test_an_upstream_that_answers_json_is_charged_its_usage_in_the_header(
    channel: Channel,
) -> None:
    channel.fake.stream_mode = "json"
    charged, driven, _ = await channel.charge_of()
    assert driven.status == 200
    assert json.loads(driven.body)["usage"]["completion_tokens"] == TOKENS
    assert charged == channel.price(TOKENS)
    receipt = json.loads(base64.b64decode(driven.headers["payment-response"]))
    assert int(receipt["extra"]["chargedAmount"]) == charged


async def test_an_upstream_that_never_answers_is_a_504_charged_nothing(channel: Channel) -> None:
    channel.fake.mode = "hang"
    with anyio.fail_after(10):
        charged, driven, _ = await channel.charge_of()
    assert driven.status == 504
    assert json.loads(driven.body)["error"]["code"] == "upstream_timeout"
    assert charged == 0
