"""A job's states and the transitions between them.

::

    open ──accept──▶ accepted ──deliver──▶ delivered ──review──▶ accepted_delivery
     │                │  ▲                  │                      │
     │ cancel         │  └ hold failed      │ capture / void       │ capture / void
     ▼                ▼                     ▼                      ▼
   voided ◀──void── (held) ──capture──▶ partially_paid ──capture / void──▶ paid ──refund──▶ refunded
                      │                     │
                      └──── reclaim (after the deadline, by the payer) ──▶ reclaimed

``paid`` means nothing is held any more and something was captured (all of
it, or part of it with the rest voided); ``voided`` means nothing was
captured. ``partially_paid`` still holds the rest. A refund may follow any
capture; ``refunded`` is reached once nothing is held and a refund was made.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from farthing.jobs.errors import JobStateError

__all__ = ["TRANSITIONS", "JobState", "can_move", "check_move"]


class JobState(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    ACCEPTED_DELIVERY = "accepted_delivery"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOIDED = "voided"
    REFUNDED = "refunded"
    RECLAIMED = "reclaimed"


S = JobState
TRANSITIONS: Final[dict[JobState, frozenset[JobState]]] = {
    S.OPEN: frozenset({S.ACCEPTED, S.VOIDED}),
    S.ACCEPTED: frozenset({S.OPEN, S.DELIVERED, S.VOIDED, S.RECLAIMED}),
    S.DELIVERED: frozenset({S.ACCEPTED_DELIVERY, S.PARTIALLY_PAID, S.PAID, S.VOIDED, S.RECLAIMED}),
    S.ACCEPTED_DELIVERY: frozenset({S.PARTIALLY_PAID, S.PAID, S.VOIDED, S.RECLAIMED}),
    S.PARTIALLY_PAID: frozenset({S.PARTIALLY_PAID, S.PAID, S.RECLAIMED}),
    S.PAID: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset({S.REFUNDED}),
    S.VOIDED: frozenset(),
    S.RECLAIMED: frozenset({S.REFUNDED}),
}


def can_move(current: JobState | str, target: JobState | str) -> bool:
    """Whether the state machine has the edge ``current → target``."""
    return JobState(target) in TRANSITIONS[JobState(current)]


def check_move(current: JobState | str, target: JobState | str) -> JobState:
    """``target`` as a state; raise ``JobStateError`` when the edge does not exist."""
    if not can_move(current, target):
        raise JobStateError(f"a job cannot go from {current} to {target}")
    return JobState(target)
