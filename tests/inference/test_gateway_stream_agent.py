"""An agent streams a chat through LangChain from the paid gateway and books the charge, not the ceiling.

The seller is the real gateway and paywall with channels on the memory chain
(only vLLM is the fake, streaming five tokens). The buyer is the agents'
``Payer`` with its own ledger, paying through ``async_paying_client`` handed
to ``chat_model`` as its HTTP client; LangChain's ``astream`` reads the
events in-process (``httpx.ASGITransport``), and ``stream`` with the sync
``paying_client`` reads them over a real uvicorn on 127.0.0.1. The stream's 402 offers only ``batch-settlement``, so the agent
deposits into a channel and signs a voucher for the quote; its books then
hold exactly the price of the usage as spent on the task, nothing still
reserved, and the seller's channel row says the same. A stream the caller
cut before its last event leaves a possible spend (the ceiling still
reserved, never booked as spent), posted at the seller's real charge once
its claim shows on chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.agents import AgentBooks, Payer, async_paying_client, paying_client
from farthing.agents.channels.reconcile import resolve_channels
from farthing.agents.channels.store import list_channels
from farthing.inference import (
    InferenceSettings,
    aclose_chat_model,
    chat_model,
    close_chat_model,
)
from farthing.inference.pricing import call_price_atomic
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.wallet.chain import MemoryChain
from tests.inference.fake_vllm import FakeVllm, prompt_tokens
from tests.inference.test_gateway_metered import (
    Metered,
    metered_fixture,  # noqa: F401 - the fixture, used by name
)
from tests.paywall.conftest import serve_in_thread


@pytest.fixture(scope="module")
def memory_chain() -> Iterator[MemoryChain]:
    """A chain of this module's own: resolving a channel reads its logs from block 0,
    which on the session's shared chain (thousands of blocks by then) took a minute."""
    chain = MemoryChain()
    yield chain
    chain.close()


QUESTION = "Name one coin."
MAX_TOKENS = 40
TOKENS = 5


def buyer(metered: Metered, tmp_path: Path) -> tuple[Payer, AgentBooks, LedgerDatabase]:
    env = metered.env
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'buyer-books.sqlite'}")
    )
    upgrade_database(database)
    books = AgentBooks(database, agent_id="streamer", asset=env.asset).ensure()
    assert books.sync_deposits(env.chain, env.payer.address, from_block=0) == 1
    return Payer(signer=env.payer, chain=env.chain, asset=env.asset, books=books), books, database


def model_for(payer: Payer, app: Any, task: str) -> Any:
    client = async_paying_client(
        payer,
        task_id=task,
        purpose="a streamed answer",
        max_price=1_000_000,
        transport=httpx.ASGITransport(app=app),
    )
    settings = InferenceSettings(max_tokens=MAX_TOKENS, request_timeout_s=30.0, retry_count_max=0)
    return chat_model(
        "http://gateway.test/v1",
        model="fake-model",
        settings=settings,
        http_async_client=client,
    )


@pytest.mark.anyio
async def test_langchain_streams_through_a_channel_and_the_books_count_the_charge(
    metered: Metered, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    app = metered.gateway(fake_vllm)
    payer, books, database = buyer(metered, tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": QUESTION}]}
        per_1k = (await client.post("/v1/price", json=body)).json()["price_per_1k_atomic"]
    spent_each = call_price_atomic(
        prompt_tokens([{"role": "user", "content": QUESTION}]) + TOKENS, per_1k
    )
    for n in (1, 2):
        chat = model_for(payer, app, f"stream-{n}")
        try:
            parts = [chunk.content async for chunk in chat.astream(QUESTION)]
        finally:
            await aclose_chat_model(chat)
        assert "".join(str(p) for p in parts) == "tok " * TOKENS
        assert fake_vllm.chat_bodies[-1]["stream"] is True
        status = books.status(f"stream-{n}")
        # The charged usage is spent; the rest of the ceiling's reservation is released.
        assert (status.task_spent, status.reserved) == (spent_each, 0), status
    (channel,) = list_channels(books)
    assert channel.charged == 2 * spent_each  # the agent's view of the channel
    record = metered.store.get(bytes.fromhex(channel.channel_id.removeprefix("0x")))
    assert record is not None and (record.charged, record.held) == (2 * spent_each, 0)
    database.dispose()


class CutTransport(httpx.AsyncBaseTransport):
    """The gateway in-process, with the network cut inside the first streamed answer's body."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.cut = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not self.cut or "event-stream" not in response.headers.get("content-type", ""):
            return response
        self.cut = False
        body = b"".join([part async for part in response.stream])
        # The event with the first token arrives, then nothing.
        kept = body[: body.index(b"\n\n", body.index(b"tok ")) + 2]
        return httpx.Response(response.status_code, headers=response.headers, stream=Body(kept))


class Body(httpx.AsyncByteStream):
    """A body that arrives as it would over a socket: not read until the caller reads it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


@pytest.mark.anyio
async def test_a_stream_cut_before_its_charge_event_is_booked_from_the_claim(
    metered: Metered, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    app = metered.gateway(fake_vllm)
    payer, books, database = buyer(metered, tmp_path)
    client = async_paying_client(
        payer, task_id="cut", max_price=1_000_000, transport=CutTransport(app)
    )
    settings = InferenceSettings(max_tokens=MAX_TOKENS, retry_count_max=0)
    chat = chat_model(
        "http://gateway.test/v1", model="fake-model", settings=settings, http_async_client=client
    )
    try:
        parts = [chunk.content async for chunk in chat.astream(QUESTION)]
    finally:
        await aclose_chat_model(chat)
    assert "".join(str(p) for p in parts) == "tok "
    cut = books.status("cut")
    assert cut.spent == 0 and cut.reserved > 0  # a possible spend: the ceiling still reserved
    (channel,) = list_channels(books)
    record = metered.store.get(bytes.fromhex(channel.channel_id.removeprefix("0x")))
    assert record is not None and 0 < record.charged < cut.reserved  # the seller's usage
    # The seller claims; the chain's totalClaimed proves the charge, which is posted.
    claimer = ChannelClaimer(metered.store, metered.facilitator, metered.authorizer)
    assert (await claimer.tick(force=True)).failures == ()
    resolved = resolve_channels(payer)
    # The deposit the lost answer would have confirmed is posted too (from the token).
    assert [r.action for r in resolved] == ["deposit_posted", "charge_posted"]
    assert resolved[1].amount == record.charged
    after = books.status("cut")
    assert (after.spent, after.reserved) == (record.charged, 0), after
    database.dispose()


def test_the_sync_stream_over_real_http_books_the_charge(
    metered: Metered, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    fake_vllm.stream_delay_s = 0.01  # the events come one by one over the socket
    app = metered.gateway(fake_vllm)
    payer, books, database = buyer(metered, tmp_path)
    with serve_in_thread(app) as url:
        per_1k = httpx.post(f"{url}/v1/price", json=chat_body()).json()["price_per_1k_atomic"]
        client = paying_client(payer, task_id="sync", max_price=1_000_000)
        settings = InferenceSettings(max_tokens=MAX_TOKENS, retry_count_max=0)
        chat = chat_model(f"{url}/v1", model="fake-model", settings=settings, http_client=client)
        try:
            parts = [chunk.content for chunk in chat.stream(QUESTION)]
        finally:
            close_chat_model(chat)
    assert "".join(str(p) for p in parts) == "tok " * TOKENS
    spent = call_price_atomic(prompt_tokens(chat_body()["messages"]) + TOKENS, per_1k)
    status = books.status("sync")
    assert (status.spent, status.reserved) == (spent, 0)
    database.dispose()


def chat_body() -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": QUESTION}]}
