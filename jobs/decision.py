"""What the policy does with a review: capture how much, or void; and whether a person must say yes.

The reviewer advises; this pure function decides, from the verdict, what is
held and the agent's spend policy:

* ``accept`` captures the whole hold;
* ``partial`` captures ``held * fraction_bps // 10000`` (rounded down: the
  agent never pays more than the share it accepted) and voids the rest;
* ``reject`` voids the hold.

A person must approve (the agents' approvals, ``farthing agent approvals``)
when the capture is above the policy's ``approval_above``, and always on a
reject: an agent's model alone never refuses to pay a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from farthing.agents.policy import SpendPolicy, needs_approval
from farthing.invariant import invariant
from farthing.jobs.review import BPS_WHOLE, ReviewVerdict

__all__ = ["Decision", "decide"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Capture ``amount`` (then void any rest), or void everything; and who must approve."""

    action: Literal["capture", "void"]
    amount: int  # to capture; 0 for a void
    needs_approval: bool
    why: str

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "amount": str(self.amount),
            "needsApproval": self.needs_approval,
            "why": self.why,
        }


def decide(verdict: ReviewVerdict, *, held: int, policy: SpendPolicy) -> Decision:
    invariant(held > 0, "a decision is about money on hold")
    if verdict.decision == "reject":
        return Decision("void", 0, True, "the reviewer rejected the delivery: a person confirms")
    amount = held if verdict.decision == "accept" else held * verdict.fraction_bps // BPS_WHOLE
    if amount == 0:
        return Decision("void", 0, True, "the accepted share rounds to nothing: a person confirms")
    if needs_approval(policy, amount):
        return Decision("capture", amount, True, "above the approval threshold: a person approves")
    return Decision("capture", amount, False, f"{verdict.decision}: within the policy")
