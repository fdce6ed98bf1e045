"""The gateway sells chat through x402 ``upto``: the quote is the signed ceiling, the real usage is settled once.

Real pieces: the paid gateway and its paywall on the memory chain with our
Permit2 and x402UptoPermit2Proxy at their canonical addresses, the local
facilitator (which settles ``upto`` as the permit's named facilitator), the
merchant's revenue books, and the agent's own paying client, books and
policy (``tests.agents.conftest.make_world``). Only vLLM is the fake
(``fake_vllm.py``: five completion tokens, fewer than the ``max_tokens``
paid for). A JSON chat and a streamed chat (its charge in the stream's last
event, through the end-of-stream meter) must each move exactly the usage's
price on chain in one settlement, the agent's books post that and release
the rest of the ceiling, and the merchant books it as revenue; LangChain's
``astream`` through the agent's paying client books the same. A failed call
settles nothing; usage above the ceiling settles the ceiling; a stream the
upstream breaks off settles what was sent, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.agents.client import async_paying_client
from farthing.agents.outcome import outcome_of
from farthing.agents.reservations import booked_payments
from farthing.inference import (
    Gateway,
    GatewayPayment,
    InferenceSettings,
    aclose_chat_model,
    chat_model,
)
from farthing.inference.pricing import call_price_atomic
from farthing.inference.streaming import PAYMENT_EVENT, SseReader
from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import LocalFacilitator
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.wallet.chain import Chain
from tests.agents.conftest import World, make_world
from tests.agents.upto_seller import approve_permit2
from tests.inference.conftest import fake_upstream, fast_settings
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Summarise the farthing's history in one line."}]
MAX_TOKENS = 40
COMPLETION_TOKENS = 5  # what the fake answers when max_tokens is above it
URL = "http://gateway.test/v1/chat/completions"


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS, **extra}


@pytest.fixture
def upto_world(memory_chain: Chain, tmp_path: Path) -> Iterator[World]:
    place_upto_contracts(memory_chain)
    made = make_world(memory_chain, tmp_path, funds=10_000_000)
    made.set_policy()
    approve_permit2(made.chain, made.token, made.agent, 2**256 - 1)
    yield made
    made.close()


def merchant_ledger(world: World) -> LedgerDatabase:
    """The merchant's own books (the agent's are another database)."""
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{world.tmp_path / 'merchant.sqlite'}")
    )
    upgrade_database(database)
    return database


def upto_gateway(world: World, fake: FakeVllm) -> Gateway:
    settings = fast_settings()
    payment = GatewayPayment(
        facilitator=LocalFacilitator(world.chain, world.relayer),
        store=world.store,
        asset=world.asset,
        pay_to=world.merchant,
        books=LedgerRevenueBook(merchant_ledger(world)),
        upto=True,
    )
    return Gateway(settings, upstream=fake_upstream(fake, settings), payment=payment)


async def prices(gateway: Gateway, body: dict[str, Any]) -> tuple[int, int]:
    """(the quote, the price of the fake's usage) for ``body``."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://gateway.test"
    ) as client:
        quote = (await client.post("/v1/price", json=body)).json()
    used = call_price_atomic(
        prompt_tokens(MESSAGES) + COMPLETION_TOKENS, quote["price_per_1k_atomic"]
    )
    return int(quote["amount"]), used


def revenue(world: World) -> int:
    database = merchant_ledger(world)
    try:
        with database.read() as session:
            rows = revenue_report(session=session, payee_address=world.merchant)
    finally:
        database.dispose()
    return sum(r.posted for r in rows)


async def test_the_agent_pays_a_chat_through_upto_at_its_usage(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    gateway = upto_gateway(world, fake_vllm)
    ceiling, used = await prices(gateway, chat())
    assert 0 < used < ceiling
    before = world.token.balance_of(world.agent.address)
    async with world.client(app=gateway) as http:
        response = await http.post(URL, json=chat())
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == COMPLETION_TOKENS
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.amount) == ("paid", used), outcome
    assert world.token.balance_of(world.agent.address) == before - used
    assert world.token.balance_of(world.merchant) == used
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", used)
    assert world.books.status("task-1").reserved == 0
    assert revenue(world) == used
    assert world.reconcile().breaks == ()


async def test_a_streamed_chat_through_upto_settles_once_at_its_end(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    gateway = upto_gateway(world, fake_vllm)
    ceiling, used = await prices(gateway, chat(stream=True))
    before = world.token.balance_of(world.agent.address)
    async with async_paying_client(
        world.payer, task_id="task-1", transport=httpx.ASGITransport(app=gateway)
    ) as http:
        async with http.stream("POST", URL, json=chat(stream=True)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
        outcome = outcome_of(response)
    found = [
        json.loads(e.data)["payment_response"]
        for e in SseReader().feed(body)
        if e.name == PAYMENT_EVENT
    ]
    assert len(found) == 1, body
    receipt = found[0]
    assert receipt["success"] is True and receipt["amount"] == str(used)
    assert world.token.balance_of(world.agent.address) == before - used
    assert world.token.balance_of(world.merchant) == used
    assert outcome is not None and (outcome.status, outcome.amount) == ("paid", used), outcome
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", used)
    assert 0 < used < ceiling
    assert revenue(world) == used
    assert world.reconcile().breaks == ()


async def test_a_failed_chat_through_upto_is_never_settled(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    fake_vllm.mode = "error"
    gateway = upto_gateway(world, fake_vllm)
    fake_vllm.mode = "ok"
    ceiling, _ = await prices(gateway, chat())
    fake_vllm.mode = "error"
    async with world.client(app=gateway) as http:
        response = await http.post(URL, json=chat())
    assert response.status_code == 502, response.text
    outcome = outcome_of(response)
    # Nothing settled; the agent keeps the ceiling reserved until the permit is decided.
    assert outcome is not None and outcome.status == "possible_spend"
    assert world.token.balance_of(world.merchant) == 0
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("reserved", ceiling)


async def stream_once(world: World, gateway: Gateway) -> tuple[dict[str, Any], int]:
    """One streamed chat by the agent: the charge event's receipt and what the chain moved."""
    before = world.token.balance_of(world.merchant)
    async with (
        async_paying_client(
            world.payer, task_id="task-1", transport=httpx.ASGITransport(app=gateway)
        ) as http,
        http.stream("POST", URL, json=chat(stream=True)) as response,
    ):
        assert response.status_code == 200
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    (receipt,) = [
        json.loads(e.data)["payment_response"]
        for e in SseReader().feed(body)
        if e.name == PAYMENT_EVENT
    ]
    return receipt, world.token.balance_of(world.merchant) - before


async def test_a_stream_claiming_huge_usage_is_settled_at_the_ceiling(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    gateway = upto_gateway(world, fake_vllm)
    ceiling, _ = await prices(gateway, chat(stream=True))
    fake_vllm.stream_mode = "huge_usage"  # a million completion tokens, says the upstream
    receipt, moved = await stream_once(world, gateway)
    assert receipt["success"] is True and int(receipt["amount"]) == moved == ceiling
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", ceiling)


async def test_an_upstream_that_breaks_off_is_settled_once_for_what_was_sent(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    gateway = upto_gateway(world, fake_vllm)
    ceiling, used = await prices(gateway, chat(stream=True))
    fake_vllm.stream_mode, fake_vllm.cut_after = "cut", 2
    receipt, moved = await stream_once(world, gateway)
    assert receipt["success"] is True and int(receipt["amount"]) == moved
    assert 0 < moved < used < ceiling  # two tokens sent, not five, never the ceiling
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", moved)
    assert world.reconcile().breaks == ()


async def test_langchain_streams_through_upto_and_the_books_count_the_charge(
    upto_world: World, fake_vllm: FakeVllm
) -> None:
    world = upto_world
    gateway = upto_gateway(world, fake_vllm)
    question = "Name one coin."
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}]}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://gateway.test"
    ) as client:
        per_1k = (await client.post("/v1/price", json=body)).json()["price_per_1k_atomic"]
    used = call_price_atomic(
        prompt_tokens([{"role": "user", "content": question}]) + COMPLETION_TOKENS, per_1k
    )
    http = async_paying_client(
        world.payer, task_id="stream-1", transport=httpx.ASGITransport(app=gateway)
    )
    settings = InferenceSettings(max_tokens=MAX_TOKENS, request_timeout_s=30.0, retry_count_max=0)
    chat_llm = chat_model(
        "http://gateway.test/v1", model=MODEL, settings=settings, http_async_client=http
    )
    try:
        parts = [chunk.content async for chunk in chat_llm.astream(question)]
    finally:
        await aclose_chat_model(chat_llm)
    assert "".join(str(p) for p in parts) == "tok " * COMPLETION_TOKENS
    assert fake_vllm.chat_bodies[-1]["stream"] is True
    status = world.books.status("stream-1")
    # The settled usage is spent; the rest of the ceiling's reservation is released.
    assert (status.task_spent, status.reserved) == (used, 0), status
    assert world.token.balance_of(world.merchant) == used


async def test_an_agent_without_gas_or_approval_pays_by_an_eip2612_signature(
    memory_chain: Chain, fake_vllm: FakeVllm, tmp_path: Path
) -> None:
    # The gateway's 402 declares eip2612GasSponsoring: the agent signs a gasless
    # approval of Permit2 for the ceiling with its payment, the facilitator
    # settles through settleWithPermit.
    place_upto_contracts(memory_chain)
    world = make_world(memory_chain, tmp_path, funds=10_000_000)
    try:
        world.set_policy()
        assert world.chain.native_balance(world.agent.address) == 0
        gateway = upto_gateway(world, fake_vllm)
        ceiling, used = await prices(gateway, chat())
        async with world.client(app=gateway) as http:
            response = await http.post(URL, json=chat())
        assert response.status_code == 200, response.text
        outcome = outcome_of(response)
        assert outcome is not None and (outcome.status, outcome.amount) == ("paid", used)
        assert world.token.balance_of(world.merchant) == used < ceiling
        (payment,) = booked_payments(world.books)
        assert (payment.state, payment.amount) == ("posted", used)
    finally:
        world.close()
