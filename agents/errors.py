"""Exceptions raised by ``farthing.agents``.

::

    FarthingError                      (farthing.errors)
    └── AgentError
        ├── AgentConfigError           a setting, flag or task that cannot work (a bad budget,
        │                              a task id reused with another budget, no wallet)
        └── ApprovalError              an approval that cannot be acted on (unknown id,
                                       already decided)

A refused payment, an exhausted budget, a denied approval or a seller that
cannot be reached are not exceptions: they are :class:`~farthing.agents.outcome.PaymentOutcome`
values with a snake_case ``reason`` (``exceeds_budget``, ``approval_denied``,
``host_unreachable``, …), which the tools hand to the model as readable text.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = ["AgentConfigError", "AgentError", "ApprovalError"]


class AgentError(FarthingError):
    """Root of every error raised deliberately by ``farthing.agents``."""


class AgentConfigError(AgentError, ValueError):
    """A setting, flag or task definition that cannot work; the message says which."""


class ApprovalError(AgentError):
    """An approval request that cannot be approved or denied (unknown, or already decided)."""
