"""farthing.jobs.lifecycle: the steps of a job, one module per concern, composed by ``JobService``.

``core`` holds what every step shares (the service's parts, the hold in the
books), ``result`` the ``JobResult`` every step answers, ``posting`` post and
accept, ``delivery`` deliver and review, ``money`` capture, void, refund and
reclaim. ``farthing.jobs.service.JobService`` is the one class to use.
"""

from __future__ import annotations

from farthing.jobs.lifecycle.core import JobCore, PayerKey, SaltingOperator
from farthing.jobs.lifecycle.delivery import DeliverySteps
from farthing.jobs.lifecycle.money import MoneySteps
from farthing.jobs.lifecycle.posting import PostingSteps
from farthing.jobs.lifecycle.result import JobResult

__all__ = [
    "DeliverySteps",
    "JobCore",
    "JobResult",
    "MoneySteps",
    "PayerKey",
    "PostingSteps",
    "SaltingOperator",
]
