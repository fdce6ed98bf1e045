"""The spend policy stops payments, with the ledger's reasons, before anything is signed.

Each test pays the real paywalled blog (in process, memory chain) from an
agent whose durable policy is set in its SQLite books, and checks the
outcome's reason, that nothing was left reserved, that the chain did not move
for a refused payment, and that the policy is read back from the database by
a fresh ``AgentBooks`` (as a restarted process would).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farthing.agents.books import AgentBooks
from farthing.agents.outcome import outcome_of
from farthing.agents.policy import SpendPolicy
from farthing.agents.reservations import booked_payments
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World, make_world

pytestmark = pytest.mark.anyio

SLUGS = ["quarter-penny", "copper-farthings", "withdrawn-1960", "collecting-farthings"]


async def buy(world: World, slug: str, **intent: object) -> tuple[str, str | None]:
    async with world.client(**intent) as http:  # type: ignore[arg-type]
        response = await http.get(f"{BLOG}/posts/{slug}")
    outcome = outcome_of(response)
    assert outcome is not None
    return outcome.status, outcome.reason


async def test_budget_exhaustion_stops_payments_with_exceeds_budget(
    memory_chain: Chain, tmp_path: Path
) -> None:
    world = make_world(memory_chain, tmp_path, funds=0)
    world.fund(2 * PRICE_ATOMIC + 100)  # on chain and in the books: two articles' worth
    world.fund(1_000_000, book=False)  # more on chain than the budget: the books decide
    results = [await buy(world, slug) for slug in SLUGS[:3]]
    assert results == [("paid", None), ("paid", None), ("not_paid", "exceeds_budget")]
    assert world.open_reservations() == []
    assert world.posted_total() == 2 * PRICE_ATOMIC
    assert world.token.balance_of(world.merchant) == 2 * PRICE_ATOMIC
    world.close()


async def test_the_task_budget_binds_each_task(world: World) -> None:
    world.books.start_task("small", PRICE_ATOMIC + 1)
    assert await buy(world, SLUGS[0], task_id="small") == ("paid", None)
    assert await buy(world, SLUGS[1], task_id="small") == ("not_paid", "exceeds_task_budget")
    # Another task still has its own budget; the agent's money is shared.
    world.books.start_task("other", PRICE_ATOMIC)
    assert await buy(world, SLUGS[1], task_id="other") == ("paid", None)
    assert world.open_reservations() == []


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"payment_cap": PRICE_ATOMIC - 1}, "exceeds_payment_cap"),
        ({"daily_limit": PRICE_ATOMIC + 5}, "exceeds_daily_limit"),
        ({"payee_daily_cap": PRICE_ATOMIC + 5}, "exceeds_payee_daily_cap"),
        ({"total_budget": PRICE_ATOMIC + 5}, "exceeds_total_budget"),
        ({"hosts_denied": frozenset({"blog.test"})}, "host_denied"),
        ({"hosts_allowed": frozenset({"*.example.com"})}, "host_not_allowed"),
        ({"asset_allowlist": frozenset({"eip155:1/erc20:0x" + "1" * 40})}, "asset_not_allowed"),
    ],
)
async def test_each_limit_refuses_with_its_reason(
    world: World, limits: dict[str, object], reason: str
) -> None:
    world.set_policy(**limits)
    first = await buy(world, SLUGS[0])
    second = await buy(world, SLUGS[1])
    assert reason in (first[1], second[1])
    assert world.open_reservations() == []
    # What the first refusal allowed is all that reached the merchant.
    paid = sum(1 for status, _ in (first, second) if status == "paid")
    assert world.token.balance_of(world.merchant) == paid * PRICE_ATOMIC


async def test_payee_lists(world: World) -> None:
    world.set_policy(payees_denied=frozenset({world.merchant}))
    assert await buy(world, SLUGS[0]) == ("not_paid", "payee_denied")
    world.set_policy(payees_allowed=frozenset({LocalSigner.generate().address}))
    assert await buy(world, SLUGS[0]) == ("not_paid", "payee_not_allowed")
    world.set_policy(payees_allowed=frozenset({world.merchant}))
    assert await buy(world, SLUGS[0]) == ("paid", None)


async def test_the_policy_is_read_back_from_the_database(world: World) -> None:
    policy = SpendPolicy(
        payment_cap=50_000,
        daily_limit=100_000,
        payee_daily_cap=60_000,
        total_budget=500_000,
        hosts_allowed=frozenset({"blog.test", "*.example.com"}),
        payees_denied=frozenset({"0x" + "9" * 40}),
        approval_above=40_000,
        approval_timeout_s=30,
    )
    world.books.set_policy(policy)
    again = AgentBooks(world.database, agent_id="agent", asset=world.asset)
    assert again.policy() == policy
    assert await buy(world, SLUGS[0]) == ("paid", None)
    (payment,) = booked_payments(again)
    assert (payment.task_id, payment.purpose) == ("task-1", "testing")
