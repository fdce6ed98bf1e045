"""``AgentSettings``: who the agent is, how long it waits, and how much it reads.

Built by the caller and passed in (``Payer(..., settings=AgentSettings())``);
nothing in ``farthing.agents`` reads the environment on its own. Environment
variables use the ``FARTHING_AGENT_`` prefix; the data directory also honours
the project-wide ``FARTHING_DATA_DIR``. Every limit has its unit last.

Money limits are not settings: they are the durable spend policy in the
ledger's database (``farthing agent policy set``), so that no environment
variable, flag or prompt can raise them for one run.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AgentSettings"]


class AgentSettings(BaseSettings):
    """Configuration of the paying client, the tools and ``farthing agent``."""

    model_config = SettingsConfigDict(
        env_prefix="FARTHING_AGENT_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        default=Path("~/.farthing"),
        validation_alias=AliasChoices("data_dir", "FARTHING_AGENT_DATA_DIR", "FARTHING_DATA_DIR"),
        description="Holds keys/, the dev chain's record and ledger.sqlite.",
    )
    agent_id: str = Field(default="agent", min_length=1, max_length=256)
    wallet: str = Field(
        default="default", min_length=1, max_length=64, description="Keystore name."
    )
    ledger: int = Field(default=1, ge=1, lt=2**32, description="The ledger the asset is booked on.")

    # ------------------------------------------------------------ HTTP
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    pool_timeout_s: float = Field(default=5.0, gt=0, le=120)
    connections_max: int = Field(default=10, ge=1, le=1000)
    keepalive_connections_max: int = Field(default=5, ge=0, le=1000)
    content_chars_max: int = Field(
        default=4_000, ge=100, le=200_000, description="Page text a tool hands to the model."
    )

    # ------------------------------------------------------------ payments
    valid_for_s: int = Field(
        default=120,
        ge=15,
        le=3600,
        description="How long a signed authorization stays valid (at most the seller's maxTimeoutSeconds).",
    )
    settle_retry_count_max: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of the same payment after 503 settlement_pending.",
    )
    settle_retry_delay_s: float = Field(default=1.0, ge=0, le=60)
    approval_poll_s: float = Field(default=0.2, gt=0, le=10)

    # ------------------------------------------------------------ channels (batch-settlement)
    channel_buys_min: int = Field(
        default=3,
        ge=1,
        le=1_000_000,
        description=(
            "Take a batch-settlement offer over exact when this many buys from the payee "
            "are expected (Intent.expected_buys) or already booked, or a channel to it is open."
        ),
    )
    channel_deposit_multiple: int = Field(
        default=20, ge=1, le=10_000, description="A new deposit is this many times the price."
    )
    channel_deposit_max: int = Field(
        default=10_000_000,
        ge=1,
        description="The largest deposit, in atomic units; the budget's room caps it too.",
    )
    channel_slots_max: int = Field(
        default=8, ge=1, le=64, description="Channels to one seller, for concurrent buyers."
    )
    channel_lease_s: float = Field(
        default=120.0, gt=0, le=3600, description="How long one request holds its channel."
    )
    channel_wait_s: float = Field(
        default=30.0, ge=0, le=600, description="How long to wait for a busy channel."
    )

    # ------------------------------------------------------------ the autonomous agent
    candidates_max: int = Field(default=20, ge=1, le=200, description="Links considered per run.")
    relevance_min: int = Field(
        default=3, ge=0, le=10, description="The rule brain skips anything scored below this."
    )

    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.read_timeout_s,
            pool=self.pool_timeout_s,
        )

    def http_limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.connections_max,
            max_keepalive_connections=self.keepalive_connections_max,
        )

    def keys_dir(self) -> Path:
        return self.data_dir.expanduser() / "keys"
