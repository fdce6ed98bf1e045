"""A job's whole lifecycle keeps the chain, the agent's books and the job row equal, on memory and anvil.

Every test drives the real JobService: a real escrow (our contracts at the
canonical addresses), a real payer signature, real SQLite books. After every
step ``Env.check()`` compares, in atomic units, the wallet, the escrow's token
store, each worker, the operator, the budget account's four balances and the
escrow's ``paymentState``; ``reconcile_jobs`` must then report no break.
"""

from __future__ import annotations

import re

import pytest

from farthing.jobs import JobState, ReviewVerdict, reconcile_jobs
from farthing.wallet.chain import Chain
from tests.jobs.conftest import PAYER_FUNDS, Env, make_env

SPEC = "Translate the paragraph into Hindi."
CRITERIA = "complete translation\nnatural Hindi"


def _post(env: Env, price: str = "2 USDC", rate: str | None = None, deadline_s: int = 3_600) -> int:
    result = env.service.post(
        title="Translate a paragraph",
        specification=SPEC,
        criteria=CRITERIA,
        price=price,
        rate=rate,
        deadline=env.deadline(deadline_s),
    )
    assert result.ok, result.message
    assert result.job is not None and result.job.state is JobState.OPEN
    env.check()
    return result.job.id


def _accepted(env: Env, job_id: int) -> str:
    worker = env.worker()
    result = env.service.accept(job_id, worker)
    assert result.ok, result.message
    assert result.job is not None and result.job.state is JobState.ACCEPTED
    # The hold's transfer id is written in the one form every command uses.
    hold_id = result.job.to_json()["holdTransferId"]
    assert re.fullmatch(r"[0-9a-f]{32}", hold_id), hold_id
    env.check()
    return worker


def _delivered(
    env: Env, job_id: int, worker: str, text: str = "a complete translation in natural Hindi"
) -> None:
    result = env.service.deliver(job_id, worker, text)
    assert result.ok, result.message
    env.check()


def _no_breaks(env: Env) -> None:
    assert reconcile_jobs(env.database, env.escrow, agent_id=env.books.agent_id) == []


def test_full_capture_after_an_accepting_review(env: Env) -> None:
    # 500 INR at 0.0119 USDC/INR is 5.95 USDC, exactly.
    job_id = _post(env, "500 INR", rate="0.0119")
    job = env.service.get(job_id)
    assert (job.price_amount, job.currency, job.rate, job.amount) == (
        50_000,
        "INR",
        "0.0119",
        5_950_000,
    )
    worker = _accepted(env, job_id)
    _delivered(env, job_id, worker)
    result = env.service.review(job_id)
    assert result.ok, result.message
    job = env.service.get(job_id)
    assert job.state is JobState.PAID
    assert job.review is not None and job.review["verdict"]["decision"] == "accept"
    assert (job.held, job.captured) == (0, 5_950_000)
    assert env.token.balance_of(worker) == 5_950_000
    env.check()
    _no_breaks(env)
    status = env.books.status()
    assert (status.spent, status.reserved, status.available) == (
        5_950_000,
        0,
        PAYER_FUNDS - 5_950_000,
    )


def test_partial_capture_then_void_of_the_rest(env: Env) -> None:
    job_id = _post(env, "40 CNY", rate="0.1385")  # 5.54 USDC
    worker = _accepted(env, job_id)
    _delivered(env, job_id, worker)
    captured = env.service.capture(job_id, 2_000_000)
    assert captured.ok, captured.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.PARTIALLY_PAID, 3_540_000, 2_000_000)
    env.check()
    _no_breaks(env)
    voided = env.service.void(job_id)
    assert voided.ok, voided.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.PAID, 0, 2_000_000)
    env.check()
    _no_breaks(env)


def test_a_partial_review_captures_its_share_and_voids_the_rest(env: Env) -> None:
    job_id = _post(env, "3 USDC")
    worker = _accepted(env, job_id)
    _delivered(env, job_id, worker)
    env.reviewer._script.append(ReviewVerdict.partial(2_500, "one of four paragraphs is missing"))
    result = env.service.review(job_id)
    assert result.ok, result.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.PAID, 0, 750_000)
    assert job.void_tx is not None and len(job.capture_txs) == 1
    env.check()
    _no_breaks(env)


def test_refund_after_capture(env: Env) -> None:
    job_id = _post(env, "2 USDC")
    worker = _accepted(env, job_id)
    _delivered(env, job_id, worker)
    assert env.service.capture(job_id).ok
    env.check()
    first = env.service.refund(job_id, 500_000)
    assert first.ok, first.message
    job = env.service.get(job_id)
    assert (job.state, job.captured, job.refunded) == (JobState.REFUNDED, 2_000_000, 500_000)
    env.check()
    _no_breaks(env)
    rest = env.service.refund(job_id)
    assert rest.ok, rest.message
    assert env.service.get(job_id).refunded == 2_000_000
    env.check()
    _no_breaks(env)


def test_void_before_delivery(env: Env) -> None:
    job_id = _post(env, "1.5 USDC")
    _accepted(env, job_id)
    result = env.service.void(job_id)
    assert result.ok, result.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.VOIDED, 0, 0)
    env.check()
    _no_breaks(env)
    assert env.books.status().available == PAYER_FUNDS


def test_an_open_job_is_withdrawn_without_the_chain(env: Env) -> None:
    job_id = _post(env)
    assert env.service.void(job_id).ok
    assert env.service.get(job_id).state is JobState.VOIDED
    env.check()


def test_reclaim_after_the_deadline(own_chain: Chain, sqlite_database) -> None:  # type: ignore[no-untyped-def]
    env = make_env(own_chain, sqlite_database)
    job_id = _post(env, "2 USDC", deadline_s=600)
    worker = _accepted(env, job_id)
    _delivered(env, job_id, worker)
    early = env.service.reclaim(job_id)
    assert (early.ok, early.reason) == (False, "before_deadline")
    env.check()
    own_chain.advance_time(601)
    late = env.service.capture(job_id)
    assert (late.ok, late.reason) == (False, "past_deadline")
    env.check()
    result = env.service.reclaim(job_id)
    assert result.ok, result.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.reclaim_tx) == (JobState.RECLAIMED, 0, result.tx_hash)
    env.check()
    _no_breaks(env)
    assert env.token.balance_of(env.payer.address) == PAYER_FUNDS


def test_a_reclaim_someone_else_sent_is_resolved_from_the_chain(
    own_chain: Chain, sqlite_database
) -> None:  # type: ignore[no-untyped-def]
    env = make_env(own_chain, sqlite_database)
    job_id = _post(env, "2 USDC", deadline_s=600)
    _accepted(env, job_id)
    own_chain.advance_time(601)
    info = env.service.get(job_id).payment_info
    assert info is not None
    sent = env.escrow.reclaim(info, sender=env.payer)  # e.g. the payer's wallet, by hand
    assert sent.ok
    breaks = reconcile_jobs(env.database, env.escrow, agent_id=env.books.agent_id)
    assert {b.kind for b in breaks} >= {"held_mismatch", "books_held_mismatch"}
    result = env.service.reclaim(job_id)
    assert result.ok, result.message
    assert result.tx_hash == sent.tx_hash
    env.check()
    _no_breaks(env)


@pytest.mark.postgres
def test_full_lifecycle_on_postgres(memory_chain: Chain, postgres_database) -> None:  # type: ignore[no-untyped-def]
    env = make_env(memory_chain, postgres_database)
    job_id = _post(env, "500 INR", rate="0.0119")
    worker = _accepted(env, job_id)
    _delivered(env, job_id, worker)
    assert env.service.capture(job_id, 1_000_000).ok
    env.check()
    assert env.service.void(job_id).ok
    assert env.service.refund(job_id, 400_000).ok
    env.check()
    _no_breaks(env)
