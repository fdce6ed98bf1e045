"""A paying agent killed by SIGKILL at any step of a purchase recovers without losing or doubling money.

For each of the agent's crash points, a real agent process (``pay_once.py``)
buys one paid URL from a real ``farthing paywall serve`` on anvil with
``FARTHING_CRASH_AT`` naming that point, and dies there. The documented
recovery then runs as an operator would: ``farthing agent resolve`` (possible
spend resolved from the chain, then reconciliation), and the agent's retry of
the purchase if its books do not show it paid. Afterwards both ledgers
balance, both agree with the chain, the purchase settled at most once, the
payer got the content or kept the money, and nothing is left reserved.

The points are independent (one fresh agent each, one shared paywall), so the
module runs each phase for all of them at once, to use both cores: every
agent is killed, then every resolve runs, then every retry; each test then
checks its own point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from farthing.agents.reservations import booked_payments
from farthing.ledger import format_transfer_id
from farthing.paywall.records.payments import PaymentState
from farthing.paywall.records.store import PaymentStore
from tests.faults.harness import (
    PRICE_ATOMIC,
    SIGKILLED,
    Agent,
    FaultChain,
    PayResult,
    Site,
    agent_resolve_result,
    assert_invariants,
    new_agent,
    new_site,
    pay_result,
    spawn_agent_resolve,
    spawn_pay,
    start_paywall,
    stopping,
)

pytestmark = pytest.mark.anvil

# Where the agent dies, and whether the seller had already answered (and so
# settled and sent the content) when it did.
POINTS = {
    "agent.after_reserve": False,
    "agent.after_sign": False,
    "agent.after_send": True,
    "agent.after_response": True,
    "agent.after_post": True,
}


@dataclass
class Recovery:
    """One point's story: the crash, the books it left, the resolution, the retry if any."""

    agent: Agent
    crashed: PayResult
    states_after_crash: list[str]
    resolved: dict[str, Any]
    retry: PayResult | None


@pytest.fixture(scope="module")
def shop(fault_chain: FaultChain) -> Iterator[tuple[Site, str]]:
    """One paywall process for the module: on this side only the agent dies."""
    site = new_site(fault_chain, fault_chain.work / "shop")
    with stopping(site):
        paywall = start_paywall(fault_chain, site)
        yield site, f"{paywall.url}/api/data"


@pytest.fixture(scope="module")
def recoveries(fault_chain: FaultChain, shop: tuple[Site, str]) -> dict[str, Recovery]:
    _, url = shop
    agents = {p: new_agent(fault_chain, fault_chain.work / p) for p in POINTS}
    crashing = {p: spawn_pay(fault_chain, agents[p], url, crash_at=p) for p in POINTS}
    crashed = {p: pay_result(process) for p, process in crashing.items()}
    states = {p: [b.state for b in booked_payments(agents[p].books)] for p in POINTS}
    resolving = {p: spawn_agent_resolve(fault_chain, agents[p]) for p in POINTS}
    resolved = {p: agent_resolve_result(process) for p, process in resolving.items()}
    # Nothing was sent before these crashes, so the purchase is still to be made.
    retrying = {
        p: spawn_pay(fault_chain, agents[p], url) for p, answered in POINTS.items() if not answered
    }
    retried = {p: pay_result(process) for p, process in retrying.items()}
    return {
        p: Recovery(agents[p], crashed[p], states[p], resolved[p], retried.get(p)) for p in POINTS
    }


def states_in_store(site: Site, payer: str) -> list[PaymentState]:
    store = PaymentStore(site.store_url)
    try:
        return [r.state for r in store.records() if r.key.payer == payer.lower()]
    finally:
        store.dispose()


@pytest.mark.parametrize("point", list(POINTS))
def test_agent_killed_at_a_crash_point_recovers(
    point: str,
    fault_chain: FaultChain,
    shop: tuple[Site, str],
    recoveries: dict[str, Recovery],
) -> None:
    site, _ = shop
    story = recoveries[point]
    agent, crashed = story.agent, story.crashed
    assert crashed.code == SIGKILLED, f"the agent did not die at {point}: {crashed.stderr[-2000:]}"
    assert crashed.result is None
    # The crash left the reservation open: committed before signing, never
    # voided or posted (after_post excepted: there the books were done).
    expected = ["posted"] if point == "agent.after_post" else ["reserved"]
    assert story.states_after_crash == expected

    resolved = story.resolved
    assert resolved["ledger_balanced"], resolved
    assert resolved["reconciliation_breaks"] == 0, resolved
    answered = POINTS[point]
    runs: list[PayResult] = [crashed]
    if answered:
        # The seller settled and sent the content before the agent died: the
        # chain shows the authorization used, so resolve posts it at once.
        assert story.retry is None
        assert [r["action"] for r in resolved["resolutions"]] in ([], ["posted"])
        assert states_in_store(site, agent.address) == [PaymentState.SETTLED]
    else:
        # Nothing was sent and the window is open: resolve leaves it reserved
        # (someone might hold the authorization), and the agent's retry
        # re-signs the same one, byte for byte, and pays with it.
        assert [r["action"] for r in resolved["resolutions"]] == ["pending"]
        retry = story.retry
        assert retry is not None and retry.code == 0, retry and retry.stderr[-2000:]
        assert retry.result is not None and retry.result["outcome"] == "paid", retry.result
        assert retry.result["payment_id"] == format_transfer_id(
            booked_payments(agent.books)[0].payment_id
        )
        runs.append(retry)
    assert len(booked_payments(agent.books)) == 1
    # Where the seller answered, it wrote 200 and the content to the process it saw.
    assert_invariants(fault_chain, site, agent, runs, delivered_before_crash=answered)
    assert fault_chain.token.balance_of(site.merchant) >= PRICE_ATOMIC
