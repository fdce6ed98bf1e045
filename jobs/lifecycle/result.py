"""``JobResult``, the answer of every job step, and the refusal that rolls a step back.

An expected outcome is a value: ``ok``, or a snake_case ``reason`` with a
one-line ``message``. :class:`Refused` carries such a reason out of a
database transaction (rolling it back) and never leaves ``farthing.jobs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from farthing.jobs.store import JobView

__all__ = ["JobResult", "Refused", "refused"]


@dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of one step: ``ok``, or a snake_case ``reason`` with a one-line ``message``."""

    ok: bool
    job: JobView | None
    reason: str | None = None
    message: str | None = None
    tx_hash: str | None = None
    approval_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "message": self.message,
            "txHash": self.tx_hash,
            "approvalId": self.approval_id,
            "job": None if self.job is None else self.job.to_json(),
        }


class Refused(Exception):
    """Rolls a database transaction back with a reason; never leaves the jobs service."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def refused(job: JobView | None, reason: str, message: str) -> JobResult:
    """A refusal as a value: nothing was sent and nothing was booked."""
    return JobResult(False, job, reason, message)
