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

The names are imported on first use (``farthing.lazy``): importing one
submodule does not load the whole package.
"""

from typing import TYPE_CHECKING

from farthing.lazy import lazy_exports

if TYPE_CHECKING:
    from farthing.agents.approvals import Approval as Approval
    from farthing.agents.approvals import decide_approval as decide_approval
    from farthing.agents.approvals import list_approvals as list_approvals
    from farthing.agents.approvals import request_approval as request_approval
    from farthing.agents.approvals import wait_for_decision as wait_for_decision
    from farthing.agents.books import AgentBooks as AgentBooks
    from farthing.agents.books import BudgetStatus as BudgetStatus
    from farthing.agents.brain import Brain as Brain
    from farthing.agents.brain import Candidate as Candidate
    from farthing.agents.brain import LlmBrain as LlmBrain
    from farthing.agents.brain import RuleBrain as RuleBrain
    from farthing.agents.challenge import Challenge as Challenge
    from farthing.agents.challenge import MalformedChallenge as MalformedChallenge
    from farthing.agents.challenge import Offer as Offer
    from farthing.agents.challenge import read_challenge as read_challenge
    from farthing.agents.challenge import read_settlement as read_settlement
    from farthing.agents.client import PaymentAuth as PaymentAuth
    from farthing.agents.client import asettle_after_error as asettle_after_error
    from farthing.agents.client import async_paying_client as async_paying_client
    from farthing.agents.client import paying_client as paying_client
    from farthing.agents.client import settle_after_error as settle_after_error
    from farthing.agents.errors import AgentConfigError as AgentConfigError
    from farthing.agents.errors import AgentError as AgentError
    from farthing.agents.errors import ApprovalError as ApprovalError
    from farthing.agents.integrity import check_books as check_books
    from farthing.agents.integrity import ledger_balanced as ledger_balanced
    from farthing.agents.integrity import reconcile_books as reconcile_books
    from farthing.agents.outcome import REASONS as REASONS
    from farthing.agents.outcome import PaymentOutcome as PaymentOutcome
    from farthing.agents.outcome import outcome_of as outcome_of
    from farthing.agents.payer import Intent as Intent
    from farthing.agents.payer import Payer as Payer
    from farthing.agents.policy import SpendPolicy as SpendPolicy
    from farthing.agents.resolve import Resolution as Resolution
    from farthing.agents.resolve import resolve_possible_spend as resolve_possible_spend
    from farthing.agents.runner import AgentRun as AgentRun
    from farthing.agents.runner import RunReport as RunReport
    from farthing.agents.selection import choose_offer as choose_offer
    from farthing.agents.settings import AgentSettings as AgentSettings
    from farthing.agents.tools import AgentToolkit as AgentToolkit
    from farthing.agents.tools import FetchResult as FetchResult
    from farthing.agents.tools import PriceCheck as PriceCheck
    from farthing.agents.tools import Task as Task
    from farthing.agents.workspace import Workspace as Workspace
    from farthing.agents.workspace import open_workspace as open_workspace

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
