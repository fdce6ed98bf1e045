"""A pending channel charge is never taken for an open exact payment of the same purchase.

A channel charge is reserved like any payment but carries no EIP-3009
authorization (its voucher lives with the channel). Before this was checked,
a charge left pending by a timeout matched a later ``exact`` buy of the same
URL, payee and price, which was then refused as possible spend. Real books on
a SQLite file and the blog behind the real paywall on the memory chain.
"""

from __future__ import annotations

import asyncio

from farthing.agents.channels.books import ChargeIntent, reserve_charge
from farthing.agents.outcome import outcome_of
from farthing.agents.reservations import find_open_payment
from farthing.ledger import new_id
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World


def test_a_pending_channel_charge_does_not_block_an_exact_buy(world: World) -> None:
    url = f"{BLOG}/posts/quarter-penny"
    charge = ChargeIntent(
        payment_id=new_id(),
        channel_id="0x" + "ab" * 32,
        pay_to=world.merchant,
        ceiling=PRICE_ATOMIC,
        resource=url,
        task_id="task-1",
        purpose="testing",
    )
    assert reserve_charge(world.books, charge) == "ok"
    found = find_open_payment(
        world.books, task_id="task-1", resource=url, pay_to=world.merchant, amount=PRICE_ATOMIC
    )
    assert found is None

    async def fetch() -> object:
        async with world.client() as client:
            return await client.get(url)

    answer = asyncio.run(fetch())
    outcome = outcome_of(answer)  # type: ignore[arg-type]
    assert outcome is not None and outcome.status == "paid", outcome
