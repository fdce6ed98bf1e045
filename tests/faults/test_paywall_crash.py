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
might, and the retry still gets the content. Afterwards both ledgers balance, both
agree with the chain, the payment settled exactly once, the payer got the
content, and nothing is left reserved or claimed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    SIGKILLED,
    FaultChain,
    agent_resolve_here,
    assert_invariants,
    new_agent,
    new_site,
    pay_here,
    paywall_ready,
    paywall_resolve,
    spawn_paywall,
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


@pytest.mark.parametrize("point", list(POINTS))
def test_paywall_killed_at_a_crash_point_recovers(
    point: str, fault_chain: FaultChain, tmp_path: Path
) -> None:
    site = new_site(fault_chain, tmp_path / "site")
    agent = new_agent(fault_chain, tmp_path / "agent")
    with stopping(site):
        paywall = start_paywall(fault_chain, site, crash_at=point, lease_s=LEASE_S)
        # The process that takes over starts now, so its start-up overlaps the first one's death.
        standby = spawn_paywall(fault_chain, site, lease_s=LEASE_S)
        url = f"{paywall.url}/api/data"
        first = pay_here(fault_chain, agent, url)
        assert paywall.wait_killed() == SIGKILLED, f"the paywall did not die at {point}"
        killed_at = time.monotonic()
        assert first.result is not None and first.result["error"], first.result
        assert not first.content
        # No answer: possible spend, whatever the chain says, and the reservation stays open.
        assert first.result["outcome"] == "possible_spend", first.result
        moved = POINTS[point]
        assert first.result["reason"] == ("content_not_delivered" if moved else "timeout")

        restarted = paywall_ready(site, standby)
        time.sleep(max(0.0, killed_at + LEASE_S + LEASE_MARGIN_S - time.monotonic()))
        if point in SWEEP_FIRST:
            # The sweep resolves the claim from the chain and books the revenue;
            # the content stays owed to the payer's retry.
            early = paywall_resolve(fault_chain, site)
            assert early["still_pending"] == 0, early
        # The same URL, now served by the new process (as behind a load balancer).
        retry = pay_here(fault_chain, agent, url, port=restarted.port)
        assert retry.result is not None and retry.result["outcome"] == "paid", retry.result
        assert retry.content, retry.result
        assert retry.result["payment_id"] == first.result["payment_id"]  # the same payment

        if point not in SWEEP_FIRST:
            swept = paywall_resolve(fault_chain, site)
            assert swept["still_pending"] == 0, swept
        resolved = agent_resolve_here(fault_chain, agent)
        assert [r["action"] for r in resolved["resolutions"]] == []  # the retry booked it
        assert resolved["ledger_balanced"] and resolved["reconciliation_breaks"] == 0, resolved
        assert_invariants(fault_chain, site, agent, [first, retry])
