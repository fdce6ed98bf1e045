"""A hostile ``upto`` seller cannot make the agent sign past its policy or book what the chain does not show.

Each seller here is ``tests.agents.upto_seller``'s metered seller on the
memory chain, settling through our real Permit2 and x402UptoPermit2Proxy,
with one lie: a ceiling above the policy's limits, a claimed amount above
the ceiling or different from what moved, a receipt replayed from the
previous request, a second settle of the same permit, a receipt naming
another payer. The agent's books must post exactly what the chain moved
from the wallet for that permit (never more than its reservation), record
the lie in the audit log (``discrepancy_upto_*``), keep a reservation it
cannot match until the chain decides it, and stay reconcilable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.agents.blog import ARTICLES
from farthing.agents.ceilings import resolve_upto, upto_discrepancies
from farthing.agents.outcome import outcome_of
from farthing.agents.reservations import booked_payments
from farthing.ledger import verify
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from tests.agents.conftest import BLOG, World, make_world
from tests.agents.upto_seller import (
    Behaviour,
    MeteredSeller,
    approve_permit2,
    metered_seller,
    settle_permit,
)

pytestmark = pytest.mark.anyio

CEILING = 40_000
USED = 7_000
URL = "http://meter.test/meter"


@pytest.fixture
def upto_world(memory_chain: Chain, tmp_path: Path) -> Iterator[World]:
    place_upto_contracts(memory_chain)
    made = make_world(memory_chain, tmp_path)
    made.set_policy()
    approve_permit2(made.chain, made.token, made.agent, 2**256 - 1)
    yield made
    made.close()


def seller(
    world: World, behaviour: Behaviour, *, ceiling: int = CEILING, pay_to: str | None = None
) -> MeteredSeller:
    return metered_seller(
        world.chain,
        world.asset,
        pay_to=pay_to or world.merchant,
        relayer=world.chain.dev_accounts()[3].signer(),
        ceiling=ceiling,
        behaviour=behaviour,
    )


def kinds(world: World) -> list[str]:
    return [d.kind for d in upto_discrepancies(world.books)]


def audit_ok(world: World) -> bool:
    with world.database.read() as session:
        return verify(session=session).ok


async def test_a_ceiling_above_the_policy_is_never_signed(upto_world: World) -> None:
    world = upto_world
    world.set_policy(payment_cap=CEILING - 1)
    shop = seller(world, Behaviour(used=1))
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "not_paid",
        "exceeds_payment_cap",
    )
    world.set_policy(total_budget=CEILING - 1)
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and outcome.reason == "exceeds_total_budget"
    world.set_policy(approval_above=CEILING - 1, approval_timeout_s=1)
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and outcome.reason == "approval_timeout"
    assert shop.payloads == [] and world.open_reservations() == []


async def test_a_claim_above_the_ceiling_is_recorded_and_only_what_moved_is_posted(
    upto_world: World,
) -> None:
    world = upto_world
    shop = seller(world, Behaviour(used=USED, claimed=CEILING * 10))
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and (outcome.status, outcome.amount) == ("paid", USED)
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", USED)
    assert kinds(world) == ["settled_above_ceiling"]
    assert world.reconcile().breaks == () and audit_ok(world)


async def test_a_claim_below_what_moved_books_what_moved(upto_world: World) -> None:
    # The seller settles the whole ceiling on chain while telling the agent it used less.
    world = upto_world
    shop = seller(world, Behaviour(used=CEILING, claimed=USED))
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and outcome.amount == CEILING
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", CEILING)
    assert kinds(world) == ["settled_amount_mismatch"]
    assert world.reconcile().breaks == ()


async def test_a_replayed_receipt_posts_nothing_and_keeps_the_ceiling(upto_world: World) -> None:
    world = upto_world
    shop = seller(world, Behaviour(used=USED, replay_receipt=True, settle=True))
    async with world.client(app=shop.app) as http:
        first = outcome_of(await http.get(URL))
        second = outcome_of(await http.get(URL))
    assert first is not None and first.status == "paid"
    # The second answer carries the first request's receipt: not this permit's settlement.
    assert second is not None and (second.status, second.reason) == (
        "possible_spend",
        "settlement_unverified",
    )
    assert kinds(world) == ["settlement_not_this_permit"]
    payments = booked_payments(world.books)
    assert [(p.state, p.amount) for p in payments] == [("posted", USED), ("reserved", CEILING)]
    # The seller did settle the second permit: resolution finds and posts it.
    resolved = resolve_upto(world.books, world.chain, payer=world.agent.address)
    assert [r.action for r in resolved] == ["posted"]
    assert [p.amount for p in booked_payments(world.books)] == [USED, USED]
    assert world.reconcile().breaks == () and audit_ok(world)


async def test_a_receipt_replayed_before_any_settlement_holds_until_the_deadline(
    upto_world: World,
) -> None:
    world = upto_world
    honest = seller(world, Behaviour(used=USED))
    async with world.client(app=honest.app) as http:
        await http.get(URL)
    # Another seller answers with the first one's receipt and settles nothing.
    liar_replays = seller(world, Behaviour(used=USED, settle=False, replay_receipt=True))
    liar_replays.receipts.append(honest.receipts[0])
    async with world.client(app=liar_replays.app) as http:
        outcome = outcome_of(await http.get(URL + "?again"))
    assert outcome is not None and outcome.reason == "settlement_unverified"
    (_, held) = booked_payments(world.books)
    assert (held.state, held.amount) == ("reserved", CEILING)
    later = int(held.valid_before or 0) + 1
    (resolution,) = resolve_upto(world.books, world.chain, payer=world.agent.address, now_s=later)
    assert resolution.action == "voided"
    assert world.posted_total() == USED


async def test_a_seller_that_settles_twice_moves_money_once(upto_world: World) -> None:
    world = upto_world
    shop = seller(world, Behaviour(used=USED, settle_twice=True))
    before = world.token.balance_of(world.agent.address)
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and outcome.amount == USED
    first, second = shop.settlements
    # The facilitator settles a permit once; a settle sent around it, Permit2 refuses.
    assert first.success and (second.success, second.reason) == (False, "permit2_invalid_nonce")
    assert [d.ok for d in shop.direct] == [False]
    assert world.token.balance_of(world.agent.address) == before - USED
    # Settling it again later, for anything, is refused the same way.
    again = settle_permit(world.chain, world.chain.dev_accounts()[3].signer(), shop.payloads[0], 1)
    assert not again.ok
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", USED)
    assert world.reconcile().breaks == ()


async def test_a_receipt_for_another_payer_is_not_booked(upto_world: World) -> None:
    world = upto_world
    shop = seller(world, Behaviour(used=USED))
    stranger = LocalSigner.generate().address

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        async def rewrite(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message["headers"]:
                    if name.lower() == b"payment-response":
                        data = json.loads(base64.b64decode(value))
                        data["payer"] = stranger
                        value = base64.b64encode(json.dumps(data).encode())
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await shop.app(scope, receive, rewrite)

    async with world.client(app=app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "possible_spend",
        "settlement_unknown",
    )
    assert kinds(world) == ["receipt_not_ours"]
    # The chain shows the permit settled: resolution posts what moved, no more.
    (resolution,) = resolve_upto(world.books, world.chain, payer=world.agent.address)
    assert resolution.action == "posted"
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", USED)


async def test_a_receipt_naming_the_agents_payment_to_someone_else_is_not_booked(
    upto_world: World,
) -> None:
    world = upto_world
    # A real transfer of the agent's money on chain, to another payee: an exact purchase.
    async with world.client(app=world.app) as http:
        bought = outcome_of(await http.get(f"{BLOG}{ARTICLES[0].path}"))
    assert bought is not None and bought.status == "paid" and bought.tx_hash
    other = LocalSigner.generate().address  # the upto seller; the blog is paid elsewhere
    behaviour = Behaviour(used=USED, settle=False, receipt_transaction=bought.tx_hash)
    shop = seller(world, behaviour, pay_to=other)
    async with world.client(app=shop.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "possible_spend",
        "settlement_unverified",
    )
    assert kinds(world) == ["settlement_not_this_permit"]
    upto = [p for p in booked_payments(world.books) if p.pay_to == other.lower()]
    assert [(p.state, p.amount) for p in upto] == [("reserved", CEILING)]
    assert world.reconcile().breaks == ()
