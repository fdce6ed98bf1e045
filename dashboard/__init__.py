"""farthing.dashboard: operators and bloggers look at the books in a browser.

``farthing dashboard --database-url URL`` serves server-rendered pages
(FastAPI and Jinja2, charts as inline SVG, no CDN, a strict CSP): today's
spend per agent against its budget, payments per minute, revenue per site
and article, approvals with approve and deny buttons, reconciliation breaks
with a "run now" action, and the audit chain's verification. Figures update
by short polling. Start with ``docs/dashboard.md``::

    app = create_app(DashboardSettings(database_url="sqlite:///books.sqlite"))
"""

from __future__ import annotations

from farthing.dashboard.app import create_app
from farthing.dashboard.auth import ROLES, User, check_password, hash_password, load_users
from farthing.dashboard.errors import DashboardConfigError, DashboardError
from farthing.dashboard.listing import Listing, Money
from farthing.dashboard.settings import DashboardSettings

__all__ = [
    "ROLES",
    "DashboardConfigError",
    "DashboardError",
    "DashboardSettings",
    "Listing",
    "Money",
    "User",
    "check_password",
    "create_app",
    "hash_password",
    "load_users",
]
