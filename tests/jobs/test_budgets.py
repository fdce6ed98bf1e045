"""Holds are budget reservations: a job that would pass the budget is not posted, and concurrent holds never overspend.

The holds go through the ledger's pending transfers, checked in the same
database transaction as every budget limit. Eight threads accept eight
2-USDC jobs against a 10-USDC budget at once: exactly five holds are placed
(and authorized in escrow), the other three are refused with
``exceeds_budget`` and leave no trace, and the books and the chain agree.
The approval path is checked here too: above the threshold, and on a
reject, a person decides through the agents' approvals.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from farthing.agents.approvals import decide_approval, get_approval
from farthing.agents.policy import SpendPolicy
from farthing.jobs import JobState, ReviewVerdict, reconcile_jobs
from farthing.ledger import lookup_accounts
from tests.jobs.conftest import PAYER_FUNDS, Env


def _post(env: Env, price: str) -> int:
    result = env.service.post(
        title="Proofread", specification="Proofread a page.", criteria="no typos",
        price=price, deadline=env.deadline(),
    )  # fmt: skip
    assert result.ok, result.message
    assert result.job is not None
    return result.job.id


def test_a_job_over_the_budget_is_not_posted(env: Env) -> None:
    result = env.service.post(
        title="Too dear",
        specification="x",
        criteria="x",
        price="10.000001 USDC",
        deadline=env.deadline(),
    )
    assert (result.ok, result.reason, result.job) == (False, "exceeds_budget", None)
    assert env.service.list() == []
    env.books.set_policy(SpendPolicy(daily_limit=3_000_000))
    refused = env.service.post(
        title="Over the day",
        specification="x",
        criteria="x",
        price="4 USDC",
        deadline=env.deadline(),
    )
    assert (refused.ok, refused.reason) == (False, "exceeds_daily_limit")
    env.books.set_policy(SpendPolicy(total_budget=1_000_000))
    refused = env.service.post(
        title="Over the total",
        specification="x",
        criteria="x",
        price="2 USDC",
        deadline=env.deadline(),
    )
    assert (refused.ok, refused.reason) == (False, "exceeds_total_budget")
    assert env.service.list() == []
    env.check()


def test_concurrent_holds_never_overspend(env: Env) -> None:
    jobs = [_post(env, "2 USDC") for _ in range(8)]  # each fits alone; together 16 of 10
    workers = [env.worker() for _ in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(env.service.accept, jobs, workers))
    placed = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert len(placed) == PAYER_FUNDS // 2_000_000
    assert {r.reason for r in refused} == {"exceeds_budget"}
    for r in refused:
        assert r.job is not None and r.job.state is JobState.OPEN
    with env.database.read() as session:
        (budget,) = lookup_accounts(session=session, ids=[env.books.budget_account_id])
    assert budget.debits_pending == 10_000_000 == budget.credits_posted
    env.check()
    assert reconcile_jobs(env.database, env.escrow, agent_id=env.books.agent_id) == []
    # Releasing one hold makes room for one more, exactly.
    first = placed[0].job
    assert first is not None and env.service.void(first.id).ok
    waiting = refused[0].job
    assert waiting is not None
    assert env.service.accept(waiting.id, env.worker()).ok
    env.check()


def test_above_the_threshold_a_person_approves_the_capture(env: Env) -> None:
    env.books.set_policy(SpendPolicy(approval_above=1_000_000))
    job_id = _post(env, "2 USDC")
    worker = env.worker()
    assert env.service.accept(job_id, worker).ok
    assert env.service.deliver(job_id, worker, "no typos left").ok
    waiting = env.service.review(job_id)
    assert (waiting.ok, waiting.reason) == (True, "awaiting_approval")
    assert waiting.approval_id is not None
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.ACCEPTED_DELIVERY, 2_000_000, 0)
    approval = get_approval(env.database, waiting.approval_id)
    assert approval is not None and (approval.amount, approval.pay_to) == (2_000_000, worker)
    env.check()
    decide_approval(env.database, waiting.approval_id, approve=True)
    paid = env.service.review(job_id)
    assert paid.ok, paid.message
    assert env.service.get(job_id).state is JobState.PAID
    env.check()


def test_a_reject_waits_for_a_person_and_a_denial_leaves_the_hold(env: Env) -> None:
    job_id = _post(env, "1 USDC")
    worker = env.worker()
    assert env.service.accept(job_id, worker).ok
    assert env.service.deliver(job_id, worker, "lorem ipsum").ok
    env.reviewer._script.append(ReviewVerdict.reject("this is placeholder text"))
    waiting = env.service.review(job_id)
    assert (waiting.ok, waiting.reason) == (True, "awaiting_approval")
    assert waiting.approval_id is not None
    assert env.service.get(job_id).state is JobState.DELIVERED
    decide_approval(env.database, waiting.approval_id, approve=False, note="it is fine, pay it")
    denied = env.service.review(job_id)
    assert (denied.ok, denied.reason) == (False, "approval_denied")
    assert env.service.get(job_id).held == 1_000_000
    assert env.service.capture(job_id).ok  # the person pays by hand
    env.check()


def test_an_approved_reject_voids_the_hold(env: Env) -> None:
    job_id = _post(env, "1 USDC")
    worker = env.worker()
    assert env.service.accept(job_id, worker).ok
    assert env.service.deliver(job_id, worker, "lorem ipsum").ok
    waiting = env.service.review(job_id)  # the rule finds no criterion met
    assert waiting.approval_id is not None
    decide_approval(env.database, waiting.approval_id, approve=True)
    voided = env.service.review(job_id)
    assert voided.ok, voided.message
    assert env.service.get(job_id).state is JobState.VOIDED
    env.check()
    assert env.books.status().available == PAYER_FUNDS
