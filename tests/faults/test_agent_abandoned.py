"""A reservation whose agent died before sending it, and never came back, is voided once its window closes.

A real agent process dies (SIGKILL) at ``agent.after_sign``, the later of
the two points where nothing was sent (``agent.after_reserve`` leaves the
same books, minus a signature), and is never restarted. The resolution keeps
the reservation while the authorization's window is open (a signed
authorization exists), and ``farthing agent resolve`` voids it once the
chain's clock has passed ``validBefore`` with the nonce unused. This module moves its own anvil's
clock for that, so it has an anvil of its own (the ``fault_chain`` fixture is
per module) and its paywall serves no payment after the move.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.agents.reservations import booked_payments
from farthing.agents.resolve import resolve_possible_spend
from tests.faults.harness import (
    SIGKILLED,
    FaultChain,
    Site,
    agent_resolve,
    assert_invariants,
    new_agent,
    new_site,
    pay,
    start_paywall,
    stopping,
)

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def shop(fault_chain: FaultChain) -> Iterator[tuple[Site, str]]:
    site = new_site(fault_chain, fault_chain.work / "shop")
    with stopping(site):
        paywall = start_paywall(fault_chain, site)
        yield site, f"{paywall.url}/api/data"


def test_an_abandoned_reservation_is_voided_after_its_window(
    fault_chain: FaultChain, shop: tuple[Site, str], tmp_path: Path
) -> None:
    site, url = shop
    agent = new_agent(fault_chain, tmp_path / "agent")
    crashed = pay(fault_chain, agent, url, crash_at="agent.after_sign")
    assert crashed.code == SIGKILLED, crashed.stderr[-2000:]
    (reserved,) = booked_payments(agent.books)
    assert reserved.state == "reserved" and reserved.valid_before is not None

    # What `farthing agent resolve` runs first; checked here to spare a process.
    (early,) = resolve_possible_spend(agent.books, fault_chain.chain, payer=agent.address)
    assert (early.action, early.result) == ("pending", "authorization_window_open")

    fault_chain.chain.advance_time(reserved.valid_before - fault_chain.chain.timestamp() + 1)
    late = agent_resolve(fault_chain, agent)
    assert [r["action"] for r in late["resolutions"]] == ["voided"], late
    assert late["ledger_balanced"] and late["reconciliation_breaks"] == 0, late
    assert [p.state for p in booked_payments(agent.books)] == ["voided"]
    assert_invariants(fault_chain, site, agent, [crashed])
