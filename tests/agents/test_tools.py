"""The LangChain tools have bounded, closed argument schemas and answer every bad input with readable text.

The tools are invoked exactly as an agent invokes them (``ainvoke`` with a
tool call, giving a ``ToolMessage``) against the real paywalled blog and a set
of misbehaving sellers, in process on the memory chain. Every bad input (a 402
on unknown networks or assets, a price above ``max_price``, an unreachable
host, a malformed ``PAYMENT-REQUIRED``, an empty wallet, arguments a model
made up) comes back as a tool result that says what happened, and leaves
nothing reserved and nothing paid.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolMessage
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from farthing.agents.tools import AgentToolkit, FetchArgs, Task, tool_call
from farthing.wallet.chain import Chain
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World, bad_sellers, make_world
from tests.conftest import free_port

pytestmark = pytest.mark.anyio


def site(world: World) -> Starlette:
    async def redirect(request: Any) -> Response:
        return RedirectResponse(f"{BLOG}/posts/quarter-penny", status_code=302)

    return Starlette(
        routes=[
            Route("/go", redirect),
            Mount("/bad", app=bad_sellers(world.chain.network)),
            Mount("/", app=world.app),
        ]
    )


@pytest.fixture
async def toolkit(world: World) -> AsyncIterator[AgentToolkit]:
    task = Task("task-1", "learn about the farthing", 50_000)
    world.books.start_task(task.task_id, task.budget)
    async with AgentToolkit(
        world.payer, task, transport=httpx.ASGITransport(app=site(world))
    ) as kit:
        yield kit


async def call(kit: AgentToolkit, name: str, **args: Any) -> ToolMessage:
    tools = {tool.name: tool for tool in kit.tools()}
    message = await tools[name].ainvoke(tool_call(name, args, "call-1"))
    assert isinstance(message, ToolMessage)
    return message


def test_the_fetch_schema_is_closed_and_bounded() -> None:
    schema = FetchArgs.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"url", "max_price", "purpose"}  # no payee, no budget
    for name in ("url", "max_price", "purpose"):
        assert "maxLength" in schema["properties"][name]
    assert schema["properties"]["max_price"]["pattern"].startswith("^[0-9]")


async def test_check_price_says_what_it_costs_without_paying(
    world: World, toolkit: AgentToolkit
) -> None:
    free = await call(toolkit, "check_price", url=f"{BLOG}/")
    assert "is free" in str(free.content)
    priced = await call(toolkit, "check_price", url=f"{BLOG}/posts/quarter-penny")
    text = str(priced.content)
    assert "costs 0.01385 USDC (0.1 CNY at 0.1385 USDC/CNY)" in text
    assert world.merchant in text and "within the spend policy" in text
    assert "untrusted page content" in text and "smallest English coin" in text  # the preview
    assert priced.artifact.amount == PRICE_ATOMIC
    world.set_policy(payment_cap=PRICE_ATOMIC - 1)
    capped = await call(toolkit, "check_price", url=f"{BLOG}/posts/quarter-penny")
    assert "policy: exceeds_payment_cap" in str(capped.content)
    assert world.open_reservations() == [] and world.token.balance_of(world.merchant) == 0


async def test_fetch_paid_returns_content_cost_and_receipt(
    world: World, toolkit: AgentToolkit
) -> None:
    message = await call(
        toolkit,
        "fetch_paid",
        url=f"{BLOG}/posts/quarter-penny",
        max_price="0.02",
        purpose="history",
    )
    text = str(message.content)
    assert text.startswith("paid 0.01385 USDC to ")
    assert "transaction 0x" in text and "[payment id " in text
    assert "960 of them a pound" in text
    assert message.artifact.outcome.purpose == "history"
    status = await call(toolkit, "wallet_status")
    assert "spent or reserved 0.01385 USDC, left 0.03615 USDC" in str(status.content)


@pytest.mark.parametrize(
    ("path", "max_price", "reason"),
    [
        ("/bad/unknown-network", "1", "unsupported_network"),
        ("/bad/unknown-asset", "1", "unsupported_asset"),
        ("/bad/malformed", "1", "malformed_payment_required"),
        ("/posts/quarter-penny", "0.01", "price_above_max"),
        ("/posts/quarter-penny", "0.5", "exceeds_task_budget"),
    ],
)
async def test_bad_sellers_are_readable_tool_results(
    world: World, toolkit: AgentToolkit, path: str, max_price: str, reason: str
) -> None:
    if reason == "exceeds_task_budget":
        world.books.start_task("tiny", 1_000)
        toolkit.task = Task("tiny", "tiny", 1_000)
    message = await call(toolkit, "fetch_paid", url=f"{BLOG}{path}", max_price=max_price)
    text = str(message.content)
    assert reason in text and "Nothing was charged" in text, text
    assert world.open_reservations() == [] and world.token.balance_of(world.merchant) == 0


async def test_an_unreachable_host_is_a_readable_tool_result(world: World) -> None:
    async with AgentToolkit(world.payer, Task("t", "t", 10_000)) as kit:
        message = await call(
            kit, "fetch_paid", url=f"http://127.0.0.1:{free_port()}/x", max_price="1"
        )
        priced = await call(kit, "check_price", url=f"http://127.0.0.1:{free_port()}/x")
    assert "host_unreachable" in str(message.content) and "Nothing was paid" in str(message.content)
    assert "host_unreachable" in str(priced.content)
    assert world.open_reservations() == []


async def test_an_empty_wallet_is_a_readable_tool_result(
    memory_chain: Chain, tmp_path: Path
) -> None:
    world = make_world(memory_chain, tmp_path, funds=0)
    world.fund(5_000)  # on chain and booked: less than the price
    # A booked deposit the chain does not back: the budget allows what the wallet cannot pay.
    world.books.book_funding(
        amount=1_000_000, to_address=world.agent.address, tx_hash="0x" + "cd" * 32, block_number=1
    )
    async with AgentToolkit(
        world.payer, Task("t", "t", 100_000), transport=httpx.ASGITransport(app=world.app)
    ) as kit:
        world.books.start_task("t", 100_000)
        message = await call(kit, "fetch_paid", url=f"{BLOG}/posts/quarter-penny", max_price="1")
    text = str(message.content)
    assert "insufficient_balance" in text and "the wallet holds 0.005 USDC" in text
    assert world.open_reservations() == []
    world.close()


async def test_made_up_arguments_are_refused_as_results(
    world: World, toolkit: AgentToolkit
) -> None:
    cases: list[dict[str, Any]] = [
        {"url": f"{BLOG}/posts/quarter-penny", "max_price": "1", "pay_to": "0x" + "e" * 40},
        {"url": f"{BLOG}/posts/quarter-penny", "max_price": "1e3"},
        {"url": f"{BLOG}/posts/quarter-penny", "max_price": "-1"},
        {"url": "x" * 301, "max_price": "1"},
    ]
    for args in cases:
        message = await call(toolkit, "fetch_paid", **args)
        assert "invalid arguments" in str(message.content) and "Nothing was fetched or paid" in str(
            message.content
        )
    ftp = await call(toolkit, "fetch_paid", url="ftp://blog.test/x", max_price="1")
    assert "invalid_url" in str(ftp.content)
    assert world.open_reservations() == [] and world.token.balance_of(world.merchant) == 0


async def test_redirects_are_reported_not_followed(world: World, toolkit: AgentToolkit) -> None:
    message = await call(toolkit, "fetch_paid", url=f"{BLOG}/go", max_price="1")
    assert "HTTP 302" in str(message.content)
    assert world.token.balance_of(world.merchant) == 0
