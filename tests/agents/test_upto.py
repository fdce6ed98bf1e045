"""The agent pays ``upto``: the ceiling is judged and reserved under every limit, what the chain settled is posted.

On the memory chain with our Permit2 and x402UptoPermit2Proxy at their
canonical addresses, the agent's paying client meets a metered seller
(``tests.agents.upto_seller``) that settles the signed permit through the
proxy. The books must post exactly what moved on chain and release the
rest; the ceiling, not the usage, is what the policy judges (``max_price``,
the payment cap, the approval threshold); the offer rule picks the smaller
worst case between ``exact`` and ``upto``; a retry re-sends the same permit;
and ``farthing agent resolve``'s resolution posts or voids what the seller
never said, from the chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.agents.ceilings import UPTO_PAYMENT, resolve_upto, upto_discrepancies
from farthing.agents.challenge import Challenge, Offer, read_payment_required
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Intent, Prepared
from farthing.agents.permits import nonce_used, permit_nonce
from farthing.agents.reservations import booked_payments
from farthing.agents.resolve import resolve_possible_spend
from farthing.agents.selection import choose_offer
from farthing.agents.upto import UptoPrepared
from farthing.ledger import verify
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.wire import PaymentRequirements
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from tests.agents.conftest import World, make_world
from tests.agents.upto_seller import Behaviour, approve_permit2, metered_seller, settle_permit

pytestmark = pytest.mark.anyio

CEILING = 50_000
USED = 12_345
URL = "http://meter.test/meter"


@pytest.fixture
def upto_world(memory_chain: Chain, tmp_path: Path) -> Iterator[World]:
    place_upto_contracts(memory_chain)
    made = make_world(memory_chain, tmp_path)
    made.set_policy()  # no approval threshold: these tests are about the books
    approve_permit2(made.chain, made.token, made.agent, 2**256 - 1)
    yield made
    made.close()


def seller_for(world: World, behaviour: Behaviour, **kwargs: object):  # type: ignore[no-untyped-def]
    relayer = world.chain.dev_accounts()[3].signer()
    return metered_seller(
        world.chain,
        world.asset,
        pay_to=world.merchant,
        relayer=relayer,
        ceiling=kwargs.pop("ceiling", CEILING),  # type: ignore[arg-type]
        behaviour=behaviour,
        **kwargs,  # type: ignore[arg-type]
    )


def upto_rows(world: World) -> list[int]:
    with world.database.read() as session:
        from sqlalchemy import select

        from farthing.ledger import Transfer
        from farthing.ledger.tables import table_of

        t = table_of(Transfer)
        return [
            int(r) for (r,) in session.execute(select(t.c.code).where(t.c.pending_id.is_(None)))
        ]


async def test_the_agent_posts_what_was_settled_and_releases_the_rest(upto_world: World) -> None:
    world = upto_world
    seller = seller_for(world, Behaviour(used=USED))
    before = world.token.balance_of(world.agent.address)
    async with world.client(app=seller.app) as http:
        response = await http.get(URL)
    assert response.status_code == 200, response.text
    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "paid", outcome
    assert outcome.amount == USED and outcome.tx_hash == seller.settlements[0].transaction
    assert world.token.balance_of(world.agent.address) == before - USED
    assert world.token.balance_of(world.merchant) == USED
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", USED)
    assert int(UPTO_PAYMENT) in upto_rows(world)
    status = world.books.status("task-1")
    assert status.reserved == 0 and status.spent == USED
    assert world.reconcile().breaks == ()
    assert upto_discrepancies(world.books) == []
    # The permit signed was for the ceiling, to the payee, through the named facilitator.
    auth = seller.payloads[0]["permit2Authorization"]
    assert int(auth["permitted"]["amount"]) == CEILING
    assert auth["witness"]["to"] == world.merchant
    with world.database.read() as session:
        assert verify(session=session).ok


async def test_a_whole_ceiling_settled_is_posted_whole(upto_world: World) -> None:
    world = upto_world
    seller = seller_for(world, Behaviour(used=CEILING))
    async with world.client(app=seller.app) as http:
        response = await http.get(URL)
    assert outcome_of(response).amount == CEILING  # type: ignore[union-attr]
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", CEILING)
    assert world.reconcile().breaks == ()


async def test_the_policy_judges_the_ceiling_not_the_usage(upto_world: World) -> None:
    world = upto_world
    seller = seller_for(world, Behaviour(used=1))
    # max_price below the ceiling: nothing is signed, however little would be used.
    async with world.client(app=seller.app, max_price=CEILING - 1) as http:
        response = await http.get(URL)
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "not_paid",
        "price_above_max",
    )
    # The per-payment cap and the budgets are checked against the ceiling, by the ledger.
    world.set_policy(payment_cap=CEILING - 1)
    async with world.client(app=seller.app) as http:
        response = await http.get(URL)
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "not_paid",
        "exceeds_payment_cap",
    )
    world.set_policy(daily_limit=CEILING)
    async with world.client(app=seller.app) as http:
        assert outcome_of(await http.get(URL)).status == "paid"  # type: ignore[union-attr]
    # 1 was spent today, but the next ceiling would pass the daily limit: refused.
    async with world.client(app=seller.app) as http:
        outcome = outcome_of(await http.get(URL))
    assert outcome is not None and outcome.reason == "exceeds_daily_limit"
    assert seller.payloads and len(seller.payloads) == 1  # only one permit ever left the agent
    assert world.open_reservations() == []


async def test_the_ceiling_waits_for_a_person_above_the_threshold(upto_world: World) -> None:
    world = upto_world
    world.set_policy(approval_above=CEILING - 1, approval_timeout_s=1)
    seller = seller_for(world, Behaviour(used=1))
    async with world.client(app=seller.app) as http:
        response = await http.get(URL)
    outcome = outcome_of(response)
    assert outcome is not None and outcome.reason == "approval_timeout"
    assert outcome.approval_id is not None and seller.payloads == []


async def test_a_wallet_without_a_permit2_allowance_says_so_or_pays_exact(
    memory_chain: Chain, tmp_path: Path
) -> None:
    place_upto_contracts(memory_chain)
    world = make_world(memory_chain, tmp_path)
    try:
        world.set_policy()
        seller = seller_for(world, Behaviour(used=1))
        async with world.client(app=seller.app) as http:
            outcome = outcome_of(await http.get(URL))
        assert outcome is not None and outcome.reason == "permit2_allowance_required"
        assert world.open_reservations() == [] and seller.payloads == []
    finally:
        world.close()


async def test_a_wallet_without_gas_approves_permit2_by_an_eip2612_signature(
    memory_chain: Chain, tmp_path: Path
) -> None:
    place_upto_contracts(memory_chain)
    world = make_world(memory_chain, tmp_path)
    try:
        world.set_policy()
        assert world.chain.native_balance(world.agent.address) == 0
        seller = seller_for(world, Behaviour(used=USED), sponsor_eip2612=True)
        async with world.client(app=seller.app) as http:
            outcome = outcome_of(await http.get(URL))
        assert outcome is not None and (outcome.status, outcome.amount) == ("paid", USED), outcome
        (extensions,) = seller.extensions
        approval = extensions["eip2612GasSponsoring"]["info"]
        assert int(approval["amount"]) == CEILING  # Permit2 may take the ceiling, no more
        (payment,) = booked_payments(world.books)
        assert (payment.state, payment.amount) == ("posted", USED)
        assert world.token.balance_of(world.merchant) == USED
        assert world.reconcile().breaks == ()
    finally:
        world.close()


def _offer(world: World, scheme: str, amount: int) -> Offer:
    raw = {
        "scheme": scheme,
        "network": world.chain.network,
        "asset": world.asset.address,
        "amount": str(amount),
        "payTo": world.merchant,
        "maxTimeoutSeconds": 60,
        "extra": {"name": world.asset.name, "version": world.asset.version},
    }
    return Offer(PaymentRequirements.from_wire(raw), raw=raw)


def test_the_offer_rule_is_the_smaller_worst_case_and_upto_on_a_tie(world: World) -> None:
    def pick(*offers: Offer, allow_upto: bool = True) -> str:
        chosen = choose_offer(Challenge(2, offers), world.asset, allow_upto=allow_upto)
        assert not isinstance(chosen, str), chosen
        return f"{chosen.requirements.scheme}:{chosen.amount}"

    exact, upto = _offer(world, "exact", 10_000), _offer(world, "upto", 10_000)
    assert pick(exact, upto) == "upto:10000"  # a tie: upto can only charge less
    assert pick(exact, _offer(world, "upto", 10_001)) == "exact:10000"  # a larger ceiling
    assert pick(_offer(world, "upto", 9_999), exact) == "upto:9999"
    assert pick(exact, upto, allow_upto=False) == "exact:10000"
    assert choose_offer(Challenge(2, (upto,)), world.asset) == "unsupported_scheme"


def _challenge(world: World, *offers: tuple[str, int]) -> Challenge:
    accepts = []
    for scheme, amount in offers:
        extra = {"name": world.asset.name, "version": world.asset.version}
        if scheme == "upto":
            extra["facilitatorAddress"] = world.chain.dev_accounts()[3].address
        accepts.append(
            {
                "scheme": scheme,
                "network": world.chain.network,
                "asset": world.asset.address,
                "amount": str(amount),
                "payTo": world.merchant,
                "maxTimeoutSeconds": 300,
                "extra": extra,
            }
        )
    challenge = read_payment_required(
        {"x402Version": 2, "resource": {"url": URL}, "accepts": accepts}
    )
    assert isinstance(challenge, Challenge)
    return challenge


def test_the_payer_signs_exact_when_its_price_is_below_the_ceiling(upto_world: World) -> None:
    world = upto_world
    payer, intent = world.payer, Intent(task_id="task-1")
    cheaper_exact = payer.prepare(URL, _challenge(world, ("upto", CEILING), ("exact", 100)), intent)
    assert isinstance(cheaper_exact, Prepared) and cheaper_exact.offer.amount == 100
    tie = payer.prepare(
        URL + "?2", _challenge(world, ("exact", CEILING), ("upto", CEILING)), intent
    )
    assert isinstance(tie, UptoPrepared) and tie.ceiling == CEILING


def test_a_retry_after_a_timeout_resends_the_same_permit(upto_world: World) -> None:
    world = upto_world
    payer, intent = world.payer, Intent(task_id="task-1")
    challenge = _challenge(world, ("upto", CEILING))
    first = payer.prepare(URL, challenge, intent)
    assert isinstance(first, UptoPrepared), first
    outcome = payer.after_error(first, TimeoutError())  # the signed request got no answer
    assert (outcome.status, outcome.amount) == ("possible_spend", CEILING)
    again = payer.prepare(URL, challenge, intent)
    assert isinstance(again, UptoPrepared) and again.reused
    assert (again.payment_id, again.header) == (first.payment_id, first.header)
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("reserved", CEILING)


async def test_resolve_posts_a_permit_settled_behind_the_agents_back(upto_world: World) -> None:
    world = upto_world
    relayer = world.chain.dev_accounts()[3].signer()
    # The seller claims a zero settlement: the ceiling stays reserved (its permit lives on).
    seller = seller_for(world, Behaviour(used=USED, settle=False))
    async with world.client(app=seller.app) as http:
        response = await http.get(URL)
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.amount) == ("paid", 0)
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("reserved", CEILING)
    # Resolution before anything happened: the permit's window is open.
    (pending,) = resolve_upto(world.books, world.chain, payer=world.agent.address)
    assert (pending.action, pending.result) == ("pending", "permit_window_open")
    # Then the seller settles the permit after all: resolve posts what moved.
    settled = settle_permit(world.chain, relayer, seller.payloads[0], USED)
    assert settled.ok
    (resolution,) = resolve_possible_spend(world.books, world.chain, payer=world.agent.address)
    assert (resolution.action, resolution.tx_hash) == ("posted", settled.tx_hash)
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", USED)
    assert world.reconcile().breaks == ()


async def test_resolve_voids_an_unused_permit_after_its_deadline(upto_world: World) -> None:
    world = upto_world
    seller = seller_for(world, Behaviour(used=USED, settle=False))
    async with world.client(app=seller.app) as http:
        await http.get(URL)
    (payment,) = booked_payments(world.books)
    nonce = permit_nonce(payment.payment_id, world.agent.address)
    assert not nonce_used(world.chain, world.agent.address, nonce)
    later = int(payment.valid_before or 0) + 1
    (resolution,) = resolve_upto(world.books, world.chain, payer=world.agent.address, now_s=later)
    assert resolution.action == "voided"
    (payment,) = booked_payments(world.books)
    assert payment.state == "voided"
    assert world.books.status("task-1").reserved == 0


def test_another_payers_permit_is_not_ours(world: World) -> None:
    assert permit_nonce(1, world.agent.address) != permit_nonce(1, LocalSigner.generate().address)
