"""A paywall killed by SIGKILL at any step of serving a payment recovers: the payer gets the content or keeps the money.

For each of the paywall's crash points, a real ``farthing paywall serve`` on
anvil, armed with ``FARTHING_CRASH_AT`` and a short claim lease, dies while an
agent pays for a URL through the agents' paying client (in the test's own
process, the code ``pay_once.py`` runs: here only the paywall dies). The agent
sees the connection drop, asks the chain, and keeps the reservation open. The
documented recovery then runs: a new paywall process (started while the
first was serving, sharing its database files) takes over the URL, the dead
owner's lease runs out, the payer retries the purchase with the same
authorization (the paywall takes the claim over and resolves it from the
chain, delivering what was paid for), then ``farthing paywall resolve``
sweeps up and the agent's possible spend is resolved and reconciled (what
``farthing agent resolve`` does; the command itself runs in the agent-side
tests). For two points the sweep runs before the retry instead, as a cron job
might, and the retry still gets the content. Afterwards both ledgers balance,
both agree with the chain, the payment settled exactly once, the payer got
the content, and nothing is left reserved or claimed.

Each point has its own site (payee, database files, settling key) and its
own agent, so the module runs each phase for all points at once, to use
both cores; each test then checks its own point.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.harness import (
    SIGKILLED,
    Agent,
    FaultChain,
    PayResult,
    Site,
    agent_resolve_here,
    assert_invariants,
    new_agent,
    new_site,
    pay_many_here,
    paywall_ready,
    paywall_resolve_result,
    spawn_paywall,
    spawn_paywall_resolve,
    start_paywall,
    stopping,
)

pytestmark = pytest.mark.anvil

# Where the paywall dies, and whether the authorization had reached the chain by then.
POINTS = {
    "paywall.after_verify": False,
    "paywall.after_claim": False,
    "paywall.after_handler": False,
    "paywall.after_submit": True,
    "paywall.after_receipt": True,
    "paywall.after_mark": True,
    "paywall.after_book": True,
}
# Here the sweep (a cron job, say) gets to the dead claim before the payer's retry does.
SWEEP_FIRST = frozenset({"paywall.after_submit", "paywall.after_mark"})
# Short, so a dead owner's claim runs out within the test; the margin covers clock steps.
LEASE_S = 2.0
LEASE_MARGIN_S = 0.5
# Anvil dev accounts 1, 2, 4, 5, …: a settling key per site (0 mints, 3 is the module's).
RELAYERS = [1, 2, 4, 5, 6, 7, 8]


@dataclass
class Recovery:
    site: Site
    agent: Agent
    killed: int  # the first paywall's exit code
    first: PayResult
    early_sweep: dict[str, Any] | None
    retry: PayResult
    sweep: dict[str, Any] | None
    resolved: dict[str, Any]


@pytest.fixture(scope="module")
def recoveries(fault_chain: FaultChain) -> Iterator[dict[str, Recovery]]:
    fc = fault_chain
    with ExitStack() as stack:
        sites = {
            p: stack.enter_context(stopping(new_site(fc, fc.work / p, relayer_index=r)))
            for p, r in zip(POINTS, RELAYERS, strict=True)
        }
        agents = {p: new_agent(fc, fc.work / p / "agent") for p in POINTS}
        armed = {p: start_paywall(fc, sites[p], crash_at=p, lease_s=LEASE_S) for p in POINTS}
        # The processes that take over start now, so their start-up overlaps the first ones' death.
        standby = {p: spawn_paywall(fc, sites[p], lease_s=LEASE_S) for p in POINTS}
        urls = {p: f"{armed[p].url}/api/data" for p in POINTS}
        firsts = pay_many_here(fc, [(agents[p], urls[p], None) for p in POINTS])
        killed = {p: armed[p].wait_killed() for p in POINTS}
        killed_at = time.monotonic()
        ready = {p: paywall_ready(sites[p], standby[p]) for p in POINTS}
        time.sleep(max(0.0, killed_at + LEASE_S + LEASE_MARGIN_S - time.monotonic()))
        early = {
            p: paywall_resolve_result(spawn_paywall_resolve(fc, sites[p])) for p in SWEEP_FIRST
        }
        # The same URLs, now served by the new processes (as behind a load balancer).
        retries = pay_many_here(fc, [(agents[p], urls[p], ready[p].port) for p in POINTS])
        sweeping = {p: spawn_paywall_resolve(fc, sites[p]) for p in POINTS if p not in SWEEP_FIRST}
        sweeps = {p: paywall_resolve_result(process) for p, process in sweeping.items()}
        yield {
            p: Recovery(
                site=sites[p],
                agent=agents[p],
                killed=killed[p],
                first=first,
                early_sweep=early.get(p),
                retry=retry,
                sweep=sweeps.get(p),
                resolved=agent_resolve_here(fc, agents[p]),
            )
            for p, first, retry in zip(POINTS, firsts, retries, strict=True)
        }


@pytest.mark.parametrize("point", list(POINTS))
def test_paywall_killed_at_a_crash_point_recovers(
    point: str, fault_chain: FaultChain, recoveries: dict[str, Recovery]
) -> None:
    story = recoveries[point]
    assert story.killed == SIGKILLED, f"the paywall did not die at {point}"
    first = story.first
    assert first.result is not None and first.result["error"], first.result
    assert not first.content
    # No answer: possible spend, whatever the chain says, and the reservation stays open.
    assert first.result["outcome"] == "possible_spend", first.result
    moved = POINTS[point]
    assert first.result["reason"] == ("content_not_delivered" if moved else "timeout")

    if point in SWEEP_FIRST:
        # The sweep resolved the claim from the chain and booked the revenue;
        # the content stayed owed to the payer's retry.
        assert story.early_sweep is not None and story.early_sweep["still_pending"] == 0
    retry = story.retry
    assert retry.result is not None and retry.result["outcome"] == "paid", retry.result
    assert retry.content, retry.result
    assert retry.result["payment_id"] == first.result["payment_id"]  # the same payment
    if story.sweep is not None:
        assert story.sweep["still_pending"] == 0, story.sweep
    resolved = story.resolved
    assert [r["action"] for r in resolved["resolutions"]] == []  # the retry booked it
    assert resolved["ledger_balanced"] and resolved["reconciliation_breaks"] == 0, resolved
    assert_invariants(fault_chain, story.site, story.agent, [first, retry])
