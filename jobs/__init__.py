"""farthing.jobs: an agent hires workers and pays on accepted delivery (x402 ``auth-capture``).

A job is posted with a price in the worker's currency (converted to USDC at a
stored rate), accepted by a worker's address (the hold: a pending transfer in
the agent's books and an ``authorize`` in the escrow), delivered, reviewed by
the agent's model with structured output, and then captured (fully or in
part), voided, refunded or reclaimed after its deadline. Start with
``docs/jobs.md``::

    service = JobService(books=books, chain=chain, payer=wallet,
                         operator=DirectEscrowOperator(AuthCaptureEscrow(chain), operator_key, asset))
    job = service.post(title=..., specification=..., criteria=..., price="500 INR",
                       rate="0.0119", deadline=chain.timestamp() + 86_400).job
    service.accept(job.id, worker_address)
"""

from __future__ import annotations

from farthing.jobs.decision import Decision, decide
from farthing.jobs.errors import JobConfigError, JobError, JobNotFound, JobStateError
from farthing.jobs.lifecycle import JobResult, PayerKey
from farthing.jobs.operators.escrow import DirectEscrowOperator, EscrowOperator
from farthing.jobs.pricing import JobPrice, convert, parse_price, parse_rate
from farthing.jobs.reconcile import JobBreak, reconcile_jobs
from farthing.jobs.review import (
    LlmReviewer,
    Reviewer,
    ReviewSubject,
    ReviewVerdict,
    ScriptedReviewer,
)
from farthing.jobs.service import JobService
from farthing.jobs.settings import JobSettings
from farthing.jobs.states import JobState, can_move, check_move
from farthing.jobs.store import JobView
from farthing.jobs.tables import Job

__all__ = [
    "Decision",
    "DirectEscrowOperator",
    "EscrowOperator",
    "Job",
    "JobBreak",
    "JobConfigError",
    "JobError",
    "JobNotFound",
    "JobPrice",
    "JobResult",
    "JobService",
    "JobSettings",
    "JobState",
    "JobStateError",
    "JobView",
    "LlmReviewer",
    "PayerKey",
    "ReviewSubject",
    "ReviewVerdict",
    "Reviewer",
    "ScriptedReviewer",
    "can_move",
    "check_move",
    "convert",
    "decide",
    "parse_price",
    "parse_rate",
    "reconcile_jobs",
]
