"""``InferenceSettings``: how vLLM is launched, reached, and sold.

Built by the caller and passed in (``VllmServer(settings)``,
``gateway_app(settings, ...)``); nothing in ``farthing.inference`` reads the
environment on its own. Environment variables use the ``FARTHING_INFERENCE_``
prefix, e.g. ``FARTHING_INFERENCE_MODEL=/models/tiny``.

Money inputs of the compute-cost model (hourly costs, the price of a kWh, the
margin) are ``Decimal`` in units of the stablecoin the gateway is paid in (a
USD-pegged coin, so "dollars"); a float is refused so that no binary rounding
reaches a price. Limits carry their unit last (``startup_timeout_s``,
``max_tokens_max``).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_VLLM_VENV", "Device", "InferenceSettings"]

# Where scripts/setup_vllm.sh puts the CPU build of vLLM, relative to the
# working directory; `--python` or FARTHING_INFERENCE_PYTHON override it.
DEFAULT_VLLM_VENV = Path(".venv-vllm")

Device = Literal["auto", "cuda", "cpu"]

_DECIMAL_FIELDS = (
    "accelerator_usd_per_hour",
    "power_kw",
    "energy_usd_per_kwh",
    "depreciation_usd_per_hour",
    "margin",
    "demand_factor_min",
    "demand_factor_max",
    "demand_step_per_waiting",
)


class InferenceSettings(BaseSettings):
    """Configuration of the vLLM launcher, the chat-model factory, the gateway and its prices."""

    model_config = SettingsConfigDict(
        env_prefix="FARTHING_INFERENCE_", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        default=Path("~/.farthing"),
        validation_alias=AliasChoices(
            "data_dir", "FARTHING_INFERENCE_DATA_DIR", "FARTHING_DATA_DIR"
        ),
        description="Holds vLLM logs (logs/) and built models (models/).",
    )

    # ------------------------------------------------------------ serving (vLLM)
    model: str = Field(default="", description="Model path or name vLLM serves.")
    served_model_name: str | None = Field(
        default=None, max_length=200, description="Name clients use; defaults to the model path."
    )
    host: str = Field(default="127.0.0.1", description="Address vLLM listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port vLLM listens on.")
    device: Device = Field(default="auto", description="cuda, cpu, or auto (cuda when present).")
    python: Path | None = Field(
        default=None,
        description="Interpreter that has vLLM; defaults to .venv-vllm/bin/python, else this one.",
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=1_048_576, description="Context length; 1024 on the CPU path."
    )
    tool_call_parser: str = Field(default="hermes", pattern=r"^[a-z0-9_]{1,40}$")
    structured_outputs_backend: str = Field(default="xgrammar", pattern=r"^[a-z_-]{1,40}$")
    cpu_kvcache_space_gib: int = Field(default=1, ge=1, le=1024)
    startup_timeout_s: float = Field(default=600.0, gt=0, le=7200)
    stop_timeout_s: float = Field(default=20.0, gt=0, le=600)
    extra_args: list[str] = Field(
        default_factory=list, description="More vLLM arguments, verbatim."
    )

    # ------------------------------------------------------------ clients (LangChain)
    request_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=600)
    max_tokens: int = Field(default=256, ge=1, le=1_048_576, description="Per answer.")
    retry_count_max: int = Field(default=2, ge=0, le=10)
    connections_max: int = Field(default=16, ge=1, le=1024, description="Per chat model.")

    # ------------------------------------------------------------ the paid gateway
    upstream_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://")
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8090, ge=0, le=65535)
    pay_to: str | None = Field(default=None, description="Address the gateway is paid to.")
    max_tokens_max: int = Field(default=1024, ge=1, le=1_048_576, description="Per call.")
    max_tokens_default: int = Field(default=256, ge=1, le=1_048_576, description="If omitted.")
    upstream_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    request_body_bytes_max: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    quote_ttl_s: int = Field(
        default=120, ge=1, le=3600, description="How long a quoted price holds."
    )
    quotes_held_max: int = Field(default=10_000, ge=1, le=10_000_000)
    asset_decimals: int = Field(default=6, ge=0, le=36)

    # ------------------------------------------------------------ compute-cost pricing
    accelerator_usd_per_hour: Decimal = Field(default=Decimal("0.50"), ge=0)
    power_kw: Decimal = Field(default=Decimal("0.30"), ge=0)
    energy_usd_per_kwh: Decimal = Field(default=Decimal("0.20"), ge=0)
    depreciation_usd_per_hour: Decimal = Field(default=Decimal("0.10"), ge=0)
    margin: Decimal = Field(default=Decimal("0.20"), ge=0, le=100, description="0.2 = 20 %.")
    demand_factor_min: Decimal = Field(default=Decimal(1), gt=0, le=1000)
    demand_factor_max: Decimal = Field(default=Decimal(3), gt=0, le=1000)
    demand_step_per_waiting: Decimal = Field(
        default=Decimal("0.10"),
        ge=0,
        le=1000,
        description="Demand factor added per queued request.",
    )
    tokens_per_hour_assumed: int = Field(
        default=1_000_000, ge=1, description="Used until enough tokens are measured."
    )
    tokens_measured_min: int = Field(
        default=1_000, ge=1, description="Fewer tokens in the window: keep the assumption."
    )
    metrics_window_s: int = Field(default=300, ge=1, le=86_400)
    metrics_timeout_s: float = Field(default=5.0, gt=0, le=600)
    metrics_refresh_s: float = Field(
        default=5.0, ge=0, le=3600, description="Read /metrics at most this often when quoting."
    )

    @field_validator(*_DECIMAL_FIELDS, mode="before")
    @classmethod
    def _no_floats(cls, value: Any) -> Any:
        # A float has already lost digits ("0.1" is 0.1000000000000000055...);
        # prices are built from text or Decimal only.
        if isinstance(value, float):
            # pydantic reports ValueError (not TypeError) as a validation error.
            raise ValueError("give money and rates as decimal strings or Decimal, never a float")  # noqa: TRY004
        return value

    @model_validator(mode="after")
    def _bounds(self) -> InferenceSettings:
        if self.demand_factor_min > self.demand_factor_max:
            raise ValueError("demand_factor_min must not exceed demand_factor_max")
        if self.max_tokens_default > self.max_tokens_max:
            raise ValueError("max_tokens_default must not exceed max_tokens_max")
        return self

    def log_dir(self) -> Path:
        return self.data_dir.expanduser() / "logs"

    def models_dir(self) -> Path:
        return self.data_dir.expanduser() / "models"

    def vllm_python(self, cwd: Path | None = None) -> Path:
        """The interpreter that runs vLLM: the setting, else ``.venv-vllm``, else this one."""
        import sys

        if self.python is not None:
            return self.python
        venv = (cwd or Path.cwd()) / DEFAULT_VLLM_VENV / "bin" / "python"
        return venv if venv.exists() else Path(sys.executable)
