"""farthing.agents: agents that pay, under a durable spend policy, with books of every payment.

The names below are the public surface; the modules hold more detail:
``client`` (the paying ``httpx.Auth`` flow, sync and async), ``payer`` (the
decisions, reservation and signing behind it), ``challenge`` and
``selection`` (reading a 402, choosing an offer), ``outcome`` (what became of
a purchase), ``policy``, ``books`` and ``reservations`` (limits, accounts and
payments in the ledger's database), ``approvals`` (a person's yes or no),
``resolve`` (possible spend, from the chain), ``tools`` (LangChain tools),
``brain`` and ``runner`` (the autonomous agent), ``integrity`` (do the books
balance and agree with the chain), ``blog`` (the demo's paywalled blog),
``workspace`` and ``cli`` (``farthing agent``). Start with ``docs/agents.md``.
"""

from farthing.agents.approvals import (
    Approval,
    decide_approval,
    list_approvals,
    request_approval,
    wait_for_decision,
)
from farthing.agents.books import AgentBooks, BudgetStatus
from farthing.agents.brain import Brain, Candidate, LlmBrain, RuleBrain
from farthing.agents.challenge import (
    Challenge,
    MalformedChallenge,
    Offer,
    read_challenge,
    read_settlement,
)
from farthing.agents.client import (
    PaymentAuth,
    asettle_after_error,
    async_paying_client,
    paying_client,
    settle_after_error,
)
from farthing.agents.errors import AgentConfigError, AgentError, ApprovalError
from farthing.agents.integrity import check_books, ledger_balanced, reconcile_books
from farthing.agents.outcome import REASONS, PaymentOutcome, outcome_of
from farthing.agents.payer import Intent, Payer
from farthing.agents.policy import SpendPolicy
from farthing.agents.resolve import Resolution, resolve_possible_spend
from farthing.agents.runner import AgentRun, RunReport
from farthing.agents.selection import choose_offer
from farthing.agents.settings import AgentSettings
from farthing.agents.tools import AgentToolkit, FetchResult, PriceCheck, Task
from farthing.agents.workspace import Workspace, open_workspace

__all__ = [
    "REASONS",
    "AgentBooks",
    "AgentConfigError",
    "AgentError",
    "AgentRun",
    "AgentSettings",
    "AgentToolkit",
    "Approval",
    "ApprovalError",
    "Brain",
    "BudgetStatus",
    "Candidate",
    "Challenge",
    "FetchResult",
    "Intent",
    "LlmBrain",
    "MalformedChallenge",
    "Offer",
    "Payer",
    "PaymentAuth",
    "PaymentOutcome",
    "PriceCheck",
    "Resolution",
    "RuleBrain",
    "RunReport",
    "SpendPolicy",
    "Task",
    "Workspace",
    "asettle_after_error",
    "async_paying_client",
    "check_books",
    "choose_offer",
    "decide_approval",
    "ledger_balanced",
    "list_approvals",
    "open_workspace",
    "outcome_of",
    "paying_client",
    "read_challenge",
    "read_settlement",
    "reconcile_books",
    "request_approval",
    "resolve_possible_spend",
    "settle_after_error",
    "wait_for_decision",
]
