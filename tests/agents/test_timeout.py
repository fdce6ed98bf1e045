"""A payment whose answer never comes stays possible spend until the chain resolves it.

A real uvicorn server on anvil runs the paywall in front of a handler that
takes longer than the agent's read timeout. The agent's request times out
after its signed payment was sent: the reservation stays pending and the tool
says the money may have been spent. In the first test the server goes on to
settle; in the second its handler fails, so it never settles. Then the
ledger's reconciliation (``resolve=True``, its clock set past the
authorization's window rather than moving the shared anvil's) posts the first
with its transaction and voids the second, and the books balance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from farthing.agents.blog import blog_site
from farthing.agents.integrity import ledger_balanced
from farthing.agents.reservations import booked_payments
from farthing.agents.resolve import resolve_possible_spend
from farthing.agents.settings import AgentSettings
from farthing.agents.tools import AgentToolkit, Task
from farthing.paywall import LocalFacilitator, PaidRoute, PaywallMiddleware, PaywallOptions
from farthing.wallet.chain import RpcChain
from tests.agents.conftest import PRICE_ATOMIC, World, make_world
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anvil

HANDLER_DELAY_S = 2.0


def slow_blog(world: World, *, fail: bool) -> Any:
    site = blog_site()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        paid = any(name == b"payment-signature" for name, _ in scope.get("headers", []))
        # Unpaid requests run the handler too (for the preview): only the paid one is slow.
        if scope["type"] == "http" and paid:
            await asyncio.sleep(HANDLER_DELAY_S)
            if fail:
                raise RuntimeError("the handler failed after the client gave up")
        await site(scope, receive, send)

    return PaywallMiddleware(
        slow,
        options=PaywallOptions(
            routes=[
                PaidRoute(
                    "/posts/*", "0.1 CNY", mime_type="text/html", preview_fraction=Decimal("0.34")
                )
            ],
            facilitator=LocalFacilitator(world.chain, world.relayer),
            store=world.store,
            pay_to=world.merchant,
            asset=world.asset,
            rates={"CNY": "0.1385"},
        ),
    )


@pytest.fixture
def impatient(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[World]:
    made = make_world(anvil_chain, tmp_path, settings=AgentSettings(read_timeout_s=0.5))
    yield made
    made.close()


def fetch_timing_out(world: World, url: str) -> Any:
    async def go() -> Any:
        task = Task("task-1", "read about farthings", 100_000)
        world.books.start_task(task.task_id, task.budget)
        async with AgentToolkit(world.payer, task) as toolkit:
            result = await toolkit.fetch(url, max_price="0.02")
            return result, toolkit.describe_fetch(result)

    return asyncio.run(go())


def wait_for_settlement(world: World, nonce: str, *, used: bool) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if world.token.authorization_state(world.agent.address, nonce) == used:
            return
        time.sleep(0.2)
    raise AssertionError("the server never settled")


@pytest.mark.parametrize("server_fails", [False, True], ids=["server-settles", "server-fails"])
def test_a_timeout_leaves_possible_spend_that_reconciliation_resolves(
    impatient: World, server_fails: bool
) -> None:
    world = impatient
    with serve_in_thread(slow_blog(world, fail=server_fails)) as url:
        result, text = fetch_timing_out(world, f"{url}/posts/quarter-penny")
        assert result.outcome is not None and result.outcome.status == "possible_spend"
        assert "may have been spent" in text and "stays reserved" in text
        (payment,) = booked_payments(world.books)
        assert payment.state == "reserved" and payment.nonce is not None
        time.sleep(HANDLER_DELAY_S + 0.5)  # the server finishes (or fails) after we gave up
        if not server_fails:
            wait_for_settlement(world, payment.nonce, used=True)

    # Inside the window the agent's own resolver can only post a used authorization.
    early = resolve_possible_spend(world.books, world.chain, payer=world.agent.address)
    assert [r.action for r in early] == (["pending"] if server_fails else ["posted"])

    assert payment.valid_before is not None
    report = world.reconcile(resolve=True, now_s=payment.valid_before + 1)
    assert report.unresolved_breaks == ()
    (after,) = booked_payments(world.books)
    if server_fails:
        assert after.state == "voided"
        assert world.token.balance_of(world.merchant) == 0
        assert [r.action for r in report.resolutions] == ["void"]
    else:
        assert after.state == "posted" and after.tx_hash is not None
        assert world.token.balance_of(world.merchant) == PRICE_ATOMIC
    assert world.open_reservations() == []
    assert ledger_balanced(world.database)
