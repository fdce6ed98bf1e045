"""``JobSettings``: the windows and bounds of the jobs service.

Built by the caller and passed in; the environment prefix is ``FARTHING_JOBS_``.
Every limit has its unit last.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["JobSettings"]


class JobSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARTHING_JOBS_", extra="ignore")

    accept_window_s: int = Field(
        default=600,
        ge=30,
        le=86_400,
        description="How long the payer's signature may wait for authorize (preApprovalExpiry).",
    )
    refund_window_s: int = Field(
        default=7 * 86_400,
        ge=0,
        le=365 * 86_400,
        description="How long after the deadline a capture may still be refunded (refundExpiry).",
    )
    deadline_min_s: int = Field(default=60, ge=1, le=86_400)
    deadline_max_s: int = Field(default=365 * 86_400, ge=60)
    delivery_chars_max: int = Field(default=100_000, ge=100, le=10_000_000)
    text_chars_max: int = Field(default=20_000, ge=100, le=1_000_000)
