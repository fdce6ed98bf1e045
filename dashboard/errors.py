"""Exceptions the dashboard raises on purpose.

A refused login, a viewer who may not approve or a POST without its CSRF
token are answers (401, 403), not exceptions. These are for configuration
that cannot work::

    FarthingError                      (farthing.errors)
    └── DashboardError
        └── DashboardConfigError       a bind, credential file or setting that cannot work

Every message is one sentence a user can act on and never holds a secret.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = ["DashboardConfigError", "DashboardError"]


class DashboardError(FarthingError):
    """Root of every exception raised deliberately by ``farthing.dashboard``."""


class DashboardConfigError(DashboardError):
    """A bind address, credential file or setting that cannot work."""
