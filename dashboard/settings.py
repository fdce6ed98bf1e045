"""``DashboardSettings``: what the dashboard reads, where it listens and who may log in.

The server answers only its own host names: the localhost names on a
loopback bind, the host of ``public_url`` and each of ``allowed_hosts``;
any other ``Host`` is refused with 421, which stops DNS rebinding.

Built by the caller and passed in (``create_app(settings)``); the environment
is read only when the caller builds the settings (prefix
``FARTHING_DASHBOARD_``). Credentials come from ``users`` (the environment)
or ``users_file``, one ``NAME ROLE HASH`` per line; see ``farthing.dashboard.auth``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DashboardSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardSettings(BaseSettings):
    """Configuration of one ``farthing dashboard`` server."""

    model_config = SettingsConfigDict(env_prefix="FARTHING_DASHBOARD_", extra="ignore")

    database_url: str = Field(description="The ledger database: sqlite:///PATH or postgresql://...")
    merchant_database_url: str | None = Field(
        default=None,
        description="The merchant's own books, for revenue (default: database_url's).",
    )
    paywall_database_url: str | None = Field(
        default=None, description="The paywall's payment store, for revenue per site and article."
    )
    rpc_url: str | None = Field(default=None, description="The chain reconciliation reads.")
    network: str | None = Field(default=None, description="local, base-sepolia or base.")
    token: str | None = Field(default=None, description="Token address (default: the network's).")
    host: str = Field(default="127.0.0.1", description="Bind address.")
    public_url: str | None = Field(
        default=None,
        description="The URL people open (e.g. https://books.example.com); its host is answered.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="More host names to answer (besides loopback's)."
    )
    port: int = Field(default=8700, ge=0, le=65535)  # 0: the system picks one
    users: SecretStr | None = Field(
        default=None, description="Credentials, `NAME ROLE HASH` entries separated by `;`."
    )
    users_file: Path | None = Field(default=None, description="Credentials, one entry a line.")
    session_ttl_s: int = Field(default=8 * 3600, gt=0, le=7 * 24 * 3600)
    session_count_max: int = Field(default=10_000, gt=0, le=1_000_000)
    refresh_s: float = Field(default=5.0, gt=0, le=3600, description="Live figures' poll period.")
    verify_interval_s: float = Field(
        default=60.0, gt=0, le=86_400, description="How often the audit chain is re-verified."
    )
    table_rows_max: int = Field(default=50, ge=1, le=10_000, description="Rows a page shows.")
    export_rows_max: int = Field(default=100_000, ge=1, le=10_000_000)
    login_attempts_per_minute_max: int = Field(default=10, ge=1, le=10_000)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)
