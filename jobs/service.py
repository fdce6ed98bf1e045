"""The jobs lifecycle: post, accept, deliver, review, capture, void, refund, reclaim.

Each step keeps three things in step: the job's row, the agent's books and
the escrow on chain. :class:`JobService` is the one class to use; its steps
live in ``farthing.jobs.lifecycle``, one module per concern:

* ``posting``: **post** dry-runs the hold against the budget; **accept**
  books the hold before anything is signed, then signs and authorizes it.
* ``delivery``: **deliver** is the worker's; **review** asks the reviewer,
  lets the policy decide, asks a person if needed, then pays or voids.
* ``money``: **capture**, **void**, **refund** and **reclaim**: the chain
  call first, then the books and the row in one database transaction.

Refusals are :class:`~farthing.jobs.lifecycle.result.JobResult` values with a
snake_case ``reason`` and a one-line ``message``; nothing is sent and nothing
is booked for them.
"""

from __future__ import annotations

from farthing.jobs.lifecycle.delivery import DeliverySteps
from farthing.jobs.lifecycle.money import MoneySteps
from farthing.jobs.lifecycle.posting import PostingSteps

__all__ = ["JobService"]


class JobService(PostingSteps, DeliverySteps, MoneySteps):
    """One agent's jobs: its books, its wallet (the payer), the escrow operator and a reviewer.

    ``post``, ``accept``, ``deliver``, ``review``, ``capture``, ``void``,
    ``refund``, ``reclaim``, ``get`` and ``list``; each step answers a
    ``JobResult``.
    """
