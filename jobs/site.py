"""What the workers' pages (``jobs/server.py``) and their JSON API (``jobs/api.py``) share.

:class:`WorkerSite` holds one agent's :class:`~farthing.jobs.service.JobService`
as the workers see it: who is signed in (the session cookie or a bearer
token), the chain's clock, the agent's own jobs (never another agent's), and
one step at a time (the chain client and the job rows change together). A
refused step's HTTP status is :func:`status_of`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from fastapi import Request

from farthing.jobs.errors import JobNotFound
from farthing.jobs.lifecycle.result import JobResult
from farthing.jobs.service import JobService
from farthing.jobs.states import JobState
from farthing.jobs.store import JobView, list_jobs
from farthing.jobs.web_edge import JOB_ID_MAX
from farthing.jobs.worker_auth import WorkerSession, WorkerSessions

__all__ = ["COOKIE_NAME", "DELIVERY_KINDS", "SIGN_IN_OFF", "WorkerSite", "status_of"]

COOKIE_NAME: Final = "farthing_jobs_session"
SIGN_IN_OFF: Final = (
    "sign-in is off: this server has no public URL to name in sign-in messages "
    "(start it with farthing jobs serve --public-url URL)"
)
DELIVERY_KINDS: Final = ("text", "url", "file")
_JOBS_SHOWN_MAX: Final = 200

# A refusal's HTTP status, by the service's reason; anything else is a 409.
_STATUS: Final[dict[str, int]] = {
    "not_the_worker": 403,
    "invalid_worker": 403,
    "payee_denied": 403,
    "payee_not_allowed": 403,
    "empty_delivery": 422,
    "delivery_too_long": 422,
    "invalid_delivery_kind": 422,
    "invalid_delivery_url": 422,
}


def status_of(result: JobResult) -> int:
    """The HTTP status for a refused step: 403 for who, 422 for what, 409 for when, 503 if in flight."""
    if result.tx_hash is not None:
        return 503  # sent and not confirmed: the agent reconciles, the worker tries later
    return _STATUS.get(result.reason or "", 409)


class WorkerSite:
    """One agent's jobs as its workers see them; ``public_url`` None means sign-in is off."""

    def __init__(
        self, service: JobService, sessions: WorkerSessions, public_url: str | None
    ) -> None:
        self.service = service
        self.sessions = sessions
        self.public_url = public_url
        self.asset = service.asset
        self.network = service.chain.network
        # One step at a time: the chain client and the job rows change together.
        self.step_lock = threading.Lock()
        self.body_bytes_max = service.settings.delivery_chars_max * 4 + 4096

    def __repr__(self) -> str:
        return f"WorkerSite({self.service!r}, public_url={self.public_url!r})"

    def viewer_of(self, request: Request) -> tuple[WorkerSession | None, bool]:
        """The session and whether it came as a bearer token (not the cookie)."""
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.sessions.check(token.strip()), True
        return self.sessions.check(request.cookies.get(COOKIE_NAME)), False

    def now_s(self) -> int:
        with self.step_lock:
            return self.service.chain.timestamp()

    def read_job(self, job_id: int) -> JobView | None:
        if job_id > JOB_ID_MAX:
            return None
        try:
            job = self.service.get(job_id)
        except JobNotFound:
            return None
        return job if job.agent_id == self.service.books.agent_id else None

    def jobs_of(self, *, state: str | None = None, worker: str | None = None) -> list[JobView]:
        with self.service.database.read() as session:
            return list_jobs(
                session,
                agent_id=self.service.books.agent_id,
                state=state,
                worker=worker,
                limit=_JOBS_SHOWN_MAX,
            )

    def open_jobs(self, now: int) -> list[JobView]:
        return [job for job in self.jobs_of(state=str(JobState.OPEN)) if now < job.deadline]

    def step(self, call: Callable[[], JobResult]) -> JobResult:
        with self.step_lock:
            return call()
