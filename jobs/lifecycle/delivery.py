"""Delivering and reviewing a job: the worker hands in, the agent's reviewer and policy decide.

* **deliver** is the worker's: only the address that accepted may deliver.
* **review** asks the reviewer (the agent's model, or a scripted stand-in),
  then the policy decides (``farthing.jobs.decision``); above the threshold
  or on a reject a person approves through the agents' approvals. The
  decision is carried out with the money steps (capture, then void the rest).
"""

from __future__ import annotations

from typing import Any, Final

from farthing.agents.approvals import get_approval, request_approval, wait_for_decision
from farthing.invariant import invariant
from farthing.jobs.decision import Decision, decide
from farthing.jobs.lifecycle.core import HOLDING, is_text
from farthing.jobs.lifecycle.money import MoneySteps
from farthing.jobs.lifecycle.result import JobResult, refused
from farthing.jobs.review import Reviewer, ReviewSubject
from farthing.jobs.states import JobState
from farthing.jobs.store import JobView, move
from farthing.wallet.address import ZERO_ADDRESS

__all__ = ["DeliverySteps"]

_DELIVERY_KINDS: Final = ("text", "file", "url")


class DeliverySteps(MoneySteps):
    """``deliver`` and ``review``: the worker's delivery, then the decision and its money move."""

    # ------------------------------------------------------------ deliver

    def deliver(self, job_id: int, worker: str, content: str, *, kind: str = "text") -> JobResult:
        """The worker hands in text, a file reference or a URL; anyone else is refused."""
        return self._run(job_id, lambda job: self._deliver(job, worker, content, kind))

    def _deliver(self, job: JobView, worker: str, content: str, kind: str) -> JobResult:
        if job.state is not JobState.ACCEPTED:
            return refused(
                job, "not_awaiting_delivery", f"job {job.id} is {job.state}, not accepted"
            )
        if (
            not isinstance(worker, str)
            or job.worker is None
            or worker.strip().lower() != job.worker.lower()
        ):
            return refused(job, "not_the_worker", f"only {job.worker} may deliver job {job.id}")
        if kind not in _DELIVERY_KINDS:
            return refused(job, "invalid_delivery_kind", "a delivery is text, file or url")
        if not content.strip():
            return refused(job, "empty_delivery", "the delivery is empty")
        if not is_text(content):
            return refused(job, "invalid_text", "the delivery is not valid text")
        if len(content) > self.settings.delivery_chars_max:
            return refused(job, "delivery_too_long", "the delivery is too long")
        if kind == "url" and not content.strip().startswith(("https://", "http://")):
            return refused(job, "invalid_delivery_url", "a delivered URL starts with http(s)://")
        with self._write() as session:
            move(session, job, state=JobState.DELIVERED, delivery_kind=kind, delivery=content)
        return JobResult(True, self.get(job.id))

    # ------------------------------------------------------------ review

    def review(
        self, job_id: int, *, reviewer: Reviewer | None = None, wait_s: float = 0
    ) -> JobResult:
        """Review the delivery, let the policy decide, ask a person if needed, then pay or void.

        Run again after a person decided (``farthing agent approvals approve``)
        to carry out the approved decision; ``wait_s`` waits for it here.
        """
        return self._run(job_id, lambda job: self._review(job, reviewer or self.reviewer, wait_s))

    def _review(self, job: JobView, reviewer: Reviewer, wait_s: float) -> JobResult:
        if job.review is None:
            if job.state is not JobState.DELIVERED:
                return refused(
                    job, "not_delivered", f"job {job.id} is {job.state}: nothing to review"
                )
            invariant(job.delivery is not None, "a delivered job has its delivery")
            subject = ReviewSubject(
                job.id,
                job.title,
                job.specification,
                job.criteria,
                job.delivery_kind or "text",
                job.delivery or "",
            )
            verdict = reviewer.review(subject)
            decision = decide(verdict, held=job.held, policy=self.books.policy())
            record = {
                "verdict": verdict.model_dump(),
                "decision": decision.to_json(),
                "reviewer": reviewer.description,
            }
            approval_id = None
            if decision.needs_approval:
                approval_id = request_approval(
                    self.database,
                    agent_id=job.agent_id,
                    asset=self.asset,
                    amount=decision.amount if decision.action == "capture" else job.held,
                    pay_to=job.worker or ZERO_ADDRESS,
                    resource=f"job:{job.id}",
                    task_id=f"job:{job.id}",
                    purpose=f"{decision.action} job {job.id} ({job.title}): {decision.why}",
                ).id
            with self._write() as session:
                changes: dict[str, Any] = {"review": record, "approval_id": approval_id}
                if decision.action == "capture":
                    changes["state"] = JobState.ACCEPTED_DELIVERY
                move(session, job, **changes)
            job = self.get(job.id)
        review = job.review
        invariant(review is not None, "a reviewed job keeps its review")
        assert review is not None
        d = review["decision"]
        decision = Decision(d["action"], int(d["amount"]), bool(d["needsApproval"]), d["why"])
        if decision.needs_approval:
            invariant(job.approval_id is not None, "a decision that needs approval has a request")
            assert job.approval_id is not None
            approval = (
                wait_for_decision(self.database, job.approval_id, timeout_s=wait_s)
                if wait_s > 0
                else get_approval(self.database, job.approval_id)
            )
            status = approval.status if approval is not None else "missing"
            if status == "pending":
                return JobResult(
                    True,
                    job,
                    "awaiting_approval",
                    f"approval request {job.approval_id} waits for a person: "
                    f"farthing agent approvals approve {job.approval_id}",
                    approval_id=job.approval_id,
                )
            if status != "approved":
                return JobResult(
                    False,
                    job,
                    f"approval_{status}",
                    f"approval request {job.approval_id} is {status}: nothing was paid or voided; "
                    "capture or void by hand",
                    approval_id=job.approval_id,
                )
        if job.state not in HOLDING:
            return JobResult(True, job, "already_settled", f"job {job.id} is already {job.state}")
        return self._carry_out(job, decision)

    def _carry_out(self, job: JobView, decision: Decision) -> JobResult:
        if decision.action == "void":
            return self._void(job)
        if job.captured == 0:
            captured = self._capture(job, decision.amount)
            if not captured.ok or captured.job is None or captured.job.held == 0:
                return captured
            job = captured.job
        return self._void(job)
