"""Jobs paid through the x402 auth-capture facilitator keep chain, books and rows equal, and never pay twice.

The real JobService drives a :class:`FacilitatorEscrowOperator` over a real
``AuthCaptureFacilitator`` (our escrow at its canonical address, the memory
chain and anvil, real SQLite books): the hold is the payer's payload verified
and settled by the facilitator, and every capture, void and refund is a
consent signed by the agent's receiver authorizer. After each step
``Env.check()`` compares wallet, token store, workers, operator, budget and
``paymentState`` in ints, and ``reconcile_jobs`` reports no break. A capture
retried after a crash (the facilitator settled, the books never heard) reuses
its saved payload and idempotency key, so the worker is paid once; the same
payload at a facilitator that forgot its journal moves nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from farthing.jobs import JobService, JobState, ReviewVerdict, reconcile_jobs
from farthing.jobs.operators.facilitator import FacilitatorEscrowOperator
from farthing.paywall import LocalFacilitator
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.facilitator.remote import RemoteFacilitator
from farthing.paywall.schemes.auth_capture.facilitator import AuthCaptureFacilitator
from farthing.wallet.signer import LocalSigner
from tests.jobs.conftest import OPERATOR_FUNDS, Env

SPEC = "Translate the greeting into Japanese."
CRITERIA = "complete translation\nnatural Japanese"
GOOD = "a complete translation in natural Japanese: こんにちは"


class Via:
    """The env's service rebuilt on a facilitator-backed operator, with the worker known up front."""

    def __init__(self, env: Env, facilitator: AuthCaptureFacilitator | None = None) -> None:
        self.env = env
        self.worker = env.worker()
        self.facilitator = facilitator or AuthCaptureFacilitator(
            env.chain, env.operator, refund_receivers=[self.worker]
        )
        self.authorizer = LocalSigner.generate()
        self.operator = FacilitatorEscrowOperator(
            self.facilitator,
            authorizer=self.authorizer,
            escrow=env.escrow,
            asset=env.books.asset,
            database=env.database,
        )
        env.service = JobService(
            books=env.books,
            chain=env.chain,
            operator=self.operator,
            payer=env.payer,
            escrow=env.escrow,
            reviewer=env.reviewer,
            settings=env.service.settings,
        )

    def delivered_job(self, price: str = "800 JPY", rate: str = "0.0067") -> int:
        env = self.env
        posted = env.service.post(
            title="Translate a greeting", specification=SPEC, criteria=CRITERIA,
            price=price, rate=rate, deadline=env.deadline(),
        )  # fmt: skip
        assert posted.ok and posted.job is not None, posted.message
        accepted = env.service.accept(posted.job.id, self.worker)
        assert accepted.ok, accepted.message
        env.check()
        delivered = env.service.deliver(posted.job.id, self.worker, GOOD)
        assert delivered.ok, delivered.message
        return posted.job.id

    def no_breaks(self) -> None:
        env = self.env
        env.check()
        assert reconcile_jobs(env.database, env.escrow, agent_id=env.books.agent_id) == []


@pytest.fixture
def via(env: Env) -> Iterator[Via]:
    v = Via(env)
    yield v
    v.operator.close()


def test_a_full_capture_through_the_facilitator(via: Via) -> None:
    env = via.env
    job_id = via.delivered_job()
    job = env.service.get(job_id)
    assert job.amount == 5_360_000  # 800 JPY at 0.0067 USDC/JPY
    assert job.payment_info is not None and job.payment_info.operator == env.operator.address
    reviewed = env.service.review(job_id)
    assert reviewed.ok, reviewed.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.PAID, 0, 5_360_000)
    assert env.token.balance_of(via.worker) == 5_360_000
    assert via.operator.idempotency_key(job.payment_info, "capture").startswith(
        f"job-{job_id}.capture.2."
    )
    via.no_breaks()


def test_a_partial_capture_then_a_void(via: Via) -> None:
    env = via.env
    job_id = via.delivered_job()
    env.reviewer._script.append(ReviewVerdict.partial(2_500, "a quarter was done"))
    reviewed = env.service.review(job_id)
    assert reviewed.ok, reviewed.message
    job = env.service.get(job_id)
    assert (job.state, job.held, job.captured) == (JobState.PAID, 0, 1_340_000)
    assert job.void_tx is not None
    assert env.token.balance_of(via.worker) == 1_340_000
    via.no_breaks()


def test_a_refund_after_a_capture(via: Via) -> None:
    env = via.env
    job_id = via.delivered_job("400 JPY")  # within the operator's refund money
    assert env.service.review(job_id).ok
    refunded = env.service.refund(job_id, 360_000)
    assert refunded.ok, refunded.message
    via.no_breaks()
    rest = env.service.refund(job_id)
    assert rest.ok, rest.message
    job = env.service.get(job_id)
    assert (job.state, job.captured, job.refunded) == (JobState.REFUNDED, 2_680_000, 2_680_000)
    # The operator funds refunds (the facilitator's funding agreement); the worker keeps its pay.
    assert env.token.balance_of(via.worker) == 2_680_000
    assert env.token.balance_of(env.operator.address) == OPERATOR_FUNDS - 2_680_000
    via.no_breaks()


def test_a_refund_without_a_funding_agreement_is_refused_and_nothing_moves(env: Env) -> None:
    via = Via(env, AuthCaptureFacilitator(env.chain, env.operator))  # no refund receivers
    try:
        job_id = via.delivered_job()
        assert env.service.review(job_id).ok
        refused = env.service.refund(job_id)
        assert not refused.ok and refused.reason is not None
        assert refused.reason.endswith("refund_funding_unavailable")
        assert env.service.get(job_id).refunded == 0
        via.no_breaks()
    finally:
        via.operator.close()


def test_a_replayed_capture_moves_money_once(via: Via) -> None:
    env = via.env
    job_id = via.delivered_job()
    job = env.service.get(job_id)
    assert job.payment_info is not None
    key = via.operator.idempotency_key(job.payment_info, "capture")
    # The facilitator settles, then the agent dies before booking it.
    first = via.operator.capture(job.payment_info, job.amount)
    assert first.ok and first.tx_hash is not None
    assert env.token.balance_of(via.worker) == job.amount
    # The retry: the row did not move, so the same key and the same saved
    # payload; the facilitator answers its first outcome and sends nothing.
    block = env.chain.block_number()
    retried = env.service.capture(job_id)
    assert retried.ok, retried.message
    assert retried.tx_hash == first.tx_hash
    assert env.chain.block_number() == block
    assert env.token.balance_of(via.worker) == job.amount
    assert via.operator.idempotency_key(job.payment_info, "capture") != key
    via.no_breaks()
    # The same payload at a facilitator that forgot its journal moves nothing.
    saved = via.operator.saved_payment(key)
    assert saved is not None
    again = AuthCaptureFacilitator(env.chain, env.operator).settle(saved, saved.accepted)
    assert not again.success and again.reason is not None
    assert again.reason.endswith("unexpected_payment_state")
    assert env.token.balance_of(via.worker) == job.amount
    via.no_breaks()


def test_a_capture_over_what_is_held_is_refused_by_the_facilitator(via: Via) -> None:
    env = via.env
    job_id = via.delivered_job()
    job = env.service.get(job_id)
    assert job.payment_info is not None
    over = via.operator.capture(job.payment_info, job.amount + 1)
    assert not over.ok and not over.sent
    assert over.reason is not None and over.reason.endswith("insufficient_authorization")
    assert env.token.balance_of(via.worker) == 0
    via.no_breaks()


def test_a_job_through_a_remote_facilitator_over_http(env: Env) -> None:
    worker = env.worker()  # known to the served facilitator: refunds need an agreement
    local = LocalFacilitator(
        env.chain, env.operator, auth_capture_operator=env.operator,
        auth_capture_refund_receivers=[worker],
    )  # fmt: skip
    remote = RemoteFacilitator(
        "http://facilitator", transport=httpx.ASGITransport(app=facilitator_app(local))
    )
    operator = FacilitatorEscrowOperator(
        remote, authorizer=LocalSigner.generate(), escrow=env.escrow, asset=env.books.asset,
        database=env.database, operator=env.operator.address,
    )  # fmt: skip
    try:
        env.service = JobService(
            books=env.books, chain=env.chain, operator=operator, payer=env.payer,
            escrow=env.escrow, reviewer=env.reviewer, settings=env.service.settings,
        )  # fmt: skip
        posted = env.service.post(
            title="Translate", specification=SPEC, criteria=CRITERIA, price="40 CNY",
            rate="0.1385", deadline=env.deadline(),
        )  # fmt: skip
        assert posted.ok and posted.job is not None
        job_id = posted.job.id
        assert env.service.accept(job_id, worker).ok
        assert env.service.deliver(job_id, worker, GOOD).ok
        reviewed = env.service.review(job_id)
        assert reviewed.ok, reviewed.message
        assert env.token.balance_of(worker) == 5_540_000  # 40 CNY at 0.1385
        assert env.service.refund(job_id, 540_000).ok
        env.check()
        assert reconcile_jobs(env.database, env.escrow, agent_id=env.books.agent_id) == []
    finally:
        operator.close()
        asyncio.run(remote.aclose())
