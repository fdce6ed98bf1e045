"""The root of every exception Farthing raises on purpose.

Each package draws its own tree under this root in its ``errors.py``::

    FarthingError
    ├── WalletError        (farthing.wallet.errors)
    ├── LedgerError        (farthing.ledger.errors)
    ├── PaywallError       (farthing.paywall.errors)
    ├── AgentError         (farthing.agents.errors)
    └── InferenceError     (farthing.inference.errors)

Expected outcomes (a refused payment, a budget that is spent) are values with a
snake_case reason, not exceptions. Exceptions are for conditions the caller
cannot treat as an ordinary result: bad configuration, an unreachable service,
a programmer error. The command line turns any ``FarthingError`` into a single
line on stderr and a non-zero exit code.
"""

from __future__ import annotations

__all__ = ["FarthingError", "InvariantError"]


class FarthingError(Exception):
    """Base class for errors Farthing raises deliberately.

    The message is shown to users as-is, so it must be one clear sentence and
    must never contain a secret.
    """


class InvariantError(AssertionError):
    """A condition that money depends on did not hold: a bug, never user input."""
