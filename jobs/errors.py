"""Exceptions raised by ``farthing.jobs``.

::

    FarthingError                      (farthing.errors)
    └── JobError
        ├── JobConfigError             a price, rate, deadline or setting that cannot work
        ├── JobNotFound                no job with that id
        └── JobStateError              an illegal state transition (a bug: the service
                                       checks first and refuses with a reason)

A refused operation (a capture over the hold, a refund over what was captured,
a delivery from someone who did not accept the job, a hold that would pass the
budget) is not an exception: it is a :class:`~farthing.jobs.lifecycle.result.JobResult`
with ``ok=False`` and a snake_case ``reason``.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = ["JobConfigError", "JobError", "JobNotFound", "JobStateError"]


class JobError(FarthingError):
    """Root of every error raised deliberately by ``farthing.jobs``."""


class JobConfigError(JobError, ValueError):
    """A price, rate, deadline or setting that cannot work; the message says which."""


class JobNotFound(JobError, LookupError):
    """There is no job with the id asked for."""


class JobStateError(JobError):
    """A job was moved along a transition its state machine does not have."""
