"""Every bad step is refused with a clear reason, and nothing moves: not on chain, not in the books.

Each refusal is checked by its snake_case reason, then by the balances
(every token balance and the budget's four ledger balances the same as
before) and by ``Env.check()``. The state machine itself refuses any edge it
does not have, and the scripted reviewer's rule is checked on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from farthing.agents.policy import SpendPolicy
from farthing.jobs import (
    JobResult,
    JobState,
    JobStateError,
    ReviewSubject,
    ScriptedReviewer,
    can_move,
    check_move,
)
from farthing.ledger import lookup_accounts
from tests.jobs.conftest import Env


def _snapshot(env: Env) -> tuple[object, ...]:
    with env.database.read() as session:
        (budget,) = lookup_accounts(session=session, ids=[env.books.budget_account_id])
    tokens = [
        env.token.balance_of(a) for a in [env.payer.address, env.operator.address, *env.workers]
    ]
    return (budget.debits_pending, budget.debits_posted, budget.credits_posted, *tokens)


def _refused(env: Env, step: Callable[[], JobResult], reason: str) -> None:
    before = _snapshot(env)
    block = env.chain.block_number()
    result = step()
    assert (result.ok, result.reason) == (False, reason), result.message
    assert result.message and "\n" not in result.message
    assert _snapshot(env) == before
    assert env.chain.block_number() == block  # nothing was sent
    env.check()


def _delivered_job(env: Env, price: str = "2 USDC") -> tuple[int, str]:
    posted = env.service.post(
        title="Logo", specification="Draw a logo.", criteria="vector file",
        price=price, deadline=env.deadline(),
    )  # fmt: skip
    assert posted.ok and posted.job is not None
    worker = env.worker()
    assert env.service.accept(posted.job.id, worker).ok
    assert env.service.deliver(posted.job.id, worker, "the vector file: logo.svg").ok
    return posted.job.id, worker


def test_capture_over_the_hold(env: Env) -> None:
    job_id, _ = _delivered_job(env)
    _refused(env, lambda: env.service.capture(job_id, 2_000_001), "capture_exceeds_hold")
    assert env.service.capture(job_id, 1_500_000).ok
    _refused(env, lambda: env.service.capture(job_id, 500_001), "capture_exceeds_hold")
    _refused(env, lambda: env.service.capture(job_id, 0), "invalid_amount")


def test_refund_over_what_was_captured(env: Env) -> None:
    job_id, _ = _delivered_job(env)
    _refused(env, lambda: env.service.refund(job_id, 1), "nothing_captured")
    assert env.service.capture(job_id, 1_000_000).ok
    _refused(env, lambda: env.service.refund(job_id, 1_000_001), "refund_exceeds_captured")
    assert env.service.refund(job_id, 400_000).ok
    _refused(env, lambda: env.service.refund(job_id, 600_001), "refund_exceeds_captured")


def test_void_after_a_full_capture(env: Env) -> None:
    job_id, _ = _delivered_job(env)
    assert env.service.capture(job_id).ok
    _refused(env, lambda: env.service.void(job_id), "nothing_on_hold")
    _refused(env, lambda: env.service.capture(job_id, 1), "nothing_on_hold")
    _refused(env, lambda: env.service.reclaim(job_id), "nothing_on_hold")


def test_delivery_from_someone_else(env: Env) -> None:
    posted = env.service.post(
        title="Logo", specification="Draw a logo.", criteria="vector file",
        price="1 USDC", deadline=env.deadline(),
    )  # fmt: skip
    assert posted.job is not None
    job_id = posted.job.id
    worker = env.worker()
    _refused(env, lambda: env.service.deliver(job_id, worker, "early"), "not_awaiting_delivery")
    assert env.service.accept(job_id, worker).ok
    stranger = env.worker()
    _refused(env, lambda: env.service.deliver(job_id, stranger, "mine now"), "not_the_worker")
    _refused(env, lambda: env.service.accept(job_id, stranger), "job_not_open")
    _refused(env, lambda: env.service.deliver(job_id, worker, "   "), "empty_delivery")
    # A lone surrogate (undecodable bytes from a command line) is not text.
    _refused(env, lambda: env.service.deliver(job_id, worker, "a\ud800b"), "invalid_text")
    _refused(
        env, lambda: env.service.deliver(job_id, worker, "x", kind="zip"), "invalid_delivery_kind"
    )
    _refused(
        env,
        lambda: env.service.deliver(job_id, worker, "ftp://x", kind="url"),
        "invalid_delivery_url",
    )
    _refused(env, lambda: env.service.capture(job_id), "not_delivered")
    assert env.service.deliver(
        job_id, worker.lower(), "https://example.com/logo.svg", kind="url"
    ).ok


def test_reclaim_before_the_deadline_and_bad_workers(env: Env) -> None:
    job_id, _ = _delivered_job(env)
    _refused(env, lambda: env.service.reclaim(job_id), "before_deadline")
    posted = env.service.post(
        title="Logo", specification="Draw a logo.", criteria="vector file",
        price="1 USDC", deadline=env.deadline(),
    )  # fmt: skip
    assert posted.job is not None
    other = posted.job.id
    _refused(env, lambda: env.service.accept(other, env.payer.address), "invalid_worker")
    _refused(env, lambda: env.service.accept(other, "0x1234"), "invalid_worker")
    denied = env.worker()
    env.books.set_policy(SpendPolicy(payees_denied=frozenset({denied})))
    _refused(env, lambda: env.service.accept(other, denied), "payee_denied")


def test_a_refused_authorize_releases_the_hold_and_reopens_the_job(env: Env) -> None:
    posted = env.service.post(
        title="Logo", specification="Draw a logo.", criteria="vector file",
        price="1 USDC", deadline=env.deadline(),
    )  # fmt: skip
    assert posted.job is not None
    # The payer's wallet no longer holds the money (spent outside the books).
    assert env.token.transfer(env.owner.address, 9_500_000, sender=env.payer).ok
    result = env.service.accept(posted.job.id, env.worker())
    assert not result.ok and result.reason is not None
    job = env.service.get(posted.job.id)
    assert (job.state, job.held, job.worker, job.hold_transfer_id) == (JobState.OPEN, 0, None, None)
    with env.database.read() as session:
        (budget,) = lookup_accounts(session=session, ids=[env.books.budget_account_id])
    assert budget.debits_pending == 0


def test_the_state_machine_refuses_missing_edges() -> None:
    assert can_move(JobState.OPEN, JobState.ACCEPTED)
    assert not can_move(JobState.PAID, JobState.VOIDED)
    with pytest.raises(JobStateError, match="cannot go from paid to voided"):
        check_move(JobState.PAID, JobState.VOIDED)
    for terminal in (JobState.VOIDED,):
        assert not any(can_move(terminal, target) for target in JobState)


def test_the_scripted_reviewer_checks_each_criterion_by_its_words() -> None:
    reviewer = ScriptedReviewer()

    def verdict(delivery: str) -> tuple[str, int]:
        subject = ReviewSubject(
            1, "t", "s", "- complete translation\n- natural Hindi", "text", delivery
        )
        v = reviewer.review(subject)
        return v.decision, v.fraction_bps

    assert verdict("A complete translation, in natural Hindi.") == ("accept", 10_000)
    assert verdict("A complete translation.") == ("partial", 5_000)
    assert verdict("nothing useful") == ("reject", 0)
