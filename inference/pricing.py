"""Compute priced as an asset: from the accelerator's cost, the measured throughput, and demand.

::

    hourly cost     = accelerator $/h + power kW × energy $/kWh + depreciation $/h
    price per 1k    = hourly cost ÷ tokens per hour × 1000 × (1 + margin) × demand factor
    demand factor   = clamp(1 + step × requests waiting, factor_min, factor_max)
    price of a call = price per 1k × (prompt tokens + max_tokens) ÷ 1000

Every input is a ``Decimal`` (money and rates) or an ``int`` (tokens,
requests); no float is ever involved. "$" means units of the stablecoin the
gateway is paid in, which is USD-pegged. The price per 1k tokens is computed
as an exact fraction and rounded **up** to a whole atomic unit, and so is the
price of a call, which is also at least one atomic unit: the seller never
undercharges, and a buyer overpays by less than one atomic unit per rounding.

Tokens per hour are *measured* (prompt plus generated tokens over the
metrics window, see ``farthing.inference.metrics``) once the window holds at
least ``tokens_measured_min`` tokens over at least a second; until then the
configured ``tokens_per_hour_assumed`` stands in, and the price sheet says
which was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, Final, Literal

from farthing.inference.errors import InferenceConfigError
from farthing.inference.metrics import Throughput
from farthing.inference.settings import InferenceSettings
from farthing.invariant import invariant

__all__ = [
    "ComputeCost",
    "DemandCurve",
    "PriceSheet",
    "TokensSource",
    "call_price_atomic",
    "price_per_1k_atomic",
    "price_sheet",
]

TokensSource = Literal["measured", "assumed"]

# Products of the inputs are exact at this precision, and any rounding traps.
_EXACT: Final = Context(prec=200, traps=[InvalidOperation, Inexact])
_SPAN_MEASURED_MIN_MS: Final = 1000


def _decimal(name: str, value: object) -> Decimal:
    if isinstance(value, (float, bool)) or not isinstance(value, (Decimal, int)):
        raise InferenceConfigError(
            f"{name} must be a Decimal or an int, not {type(value).__name__}"
        )
    result = Decimal(value)
    if not result.is_finite() or result < 0:
        raise InferenceConfigError(f"{name} must be a finite, non-negative number, got {value}")
    return result


@dataclass(frozen=True, slots=True)
class ComputeCost:
    """What an hour of the accelerator costs, in units of the stablecoin."""

    accelerator_usd_per_hour: Decimal
    power_kw: Decimal
    energy_usd_per_kwh: Decimal
    depreciation_usd_per_hour: Decimal

    def __post_init__(self) -> None:
        for name in (
            "accelerator_usd_per_hour",
            "power_kw",
            "energy_usd_per_kwh",
            "depreciation_usd_per_hour",
        ):
            _decimal(name, getattr(self, name))

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> ComputeCost:
        return cls(
            settings.accelerator_usd_per_hour,
            settings.power_kw,
            settings.energy_usd_per_kwh,
            settings.depreciation_usd_per_hour,
        )

    @property
    def hourly_usd(self) -> Decimal:
        with localcontext(_EXACT):
            return (
                self.accelerator_usd_per_hour
                + self.power_kw * self.energy_usd_per_kwh
                + (self.depreciation_usd_per_hour)
            )


@dataclass(frozen=True, slots=True)
class DemandCurve:
    """The demand factor: ``1 + step × waiting``, held within ``[factor_min, factor_max]``."""

    factor_min: Decimal
    factor_max: Decimal
    step_per_waiting: Decimal

    def __post_init__(self) -> None:
        low = _decimal("demand_factor_min", self.factor_min)
        high = _decimal("demand_factor_max", self.factor_max)
        _decimal("demand_step_per_waiting", self.step_per_waiting)
        if not 0 < low <= high:
            raise InferenceConfigError("the demand factor bounds need 0 < factor_min <= factor_max")

    @classmethod
    def from_settings(cls, settings: InferenceSettings) -> DemandCurve:
        return cls(
            settings.demand_factor_min, settings.demand_factor_max, settings.demand_step_per_waiting
        )

    def factor(self, requests_waiting: int) -> Decimal:
        if (
            isinstance(requests_waiting, bool)
            or not isinstance(requests_waiting, int)
            or requests_waiting < 0
        ):
            raise InferenceConfigError(
                f"requests waiting must be a whole number >= 0, got {requests_waiting!r}"
            )
        with localcontext(_EXACT):
            raw = 1 + self.step_per_waiting * requests_waiting
        factor = min(self.factor_max, max(self.factor_min, raw))
        invariant(self.factor_min <= factor <= self.factor_max, "demand factor escaped its bounds")
        return factor


def price_per_1k_atomic(
    *,
    hourly_usd: Decimal,
    tokens_per_hour: int,
    margin: Decimal,
    demand_factor: Decimal,
    decimals: int,
) -> int:
    """Atomic units per 1000 tokens, rounded up: hourly ÷ tokens/h × 1000 × (1 + margin) × demand."""
    if (
        isinstance(tokens_per_hour, bool)
        or not isinstance(tokens_per_hour, int)
        or tokens_per_hour <= 0
    ):
        raise InferenceConfigError(
            f"tokens per hour must be a positive int, got {tokens_per_hour!r}"
        )
    if not 0 <= decimals <= 36:
        raise InferenceConfigError(f"asset decimals out of range: {decimals}")
    with localcontext(_EXACT):
        per_hour_atomic = (
            _decimal("hourly cost", hourly_usd)
            * 1000
            * (1 + _decimal("margin", margin))
            * _decimal("demand factor", demand_factor)
        ).scaleb(decimals)
    # An exact fraction p/q of atomic units per hour, divided by tokens per
    # hour and rounded up in integers: no Decimal division, so no rounding.
    numerator, denominator = per_hour_atomic.as_integer_ratio()
    return -(-numerator // (denominator * tokens_per_hour))


def call_price_atomic(tokens: int, per_1k_atomic: int) -> int:
    """The price of ``tokens`` at ``per_1k_atomic``, rounded up, and at least one atomic unit."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise InferenceConfigError(
            f"a call is priced for a positive number of tokens, got {tokens!r}"
        )
    if isinstance(per_1k_atomic, bool) or not isinstance(per_1k_atomic, int) or per_1k_atomic < 0:
        raise InferenceConfigError(
            f"a price per 1k tokens must be an int >= 0, got {per_1k_atomic!r}"
        )
    amount = max(1, -(-tokens * per_1k_atomic // 1000))
    invariant(amount * 1000 >= tokens * per_1k_atomic, "a call was priced below its tokens")
    return amount


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """The current price per 1k tokens and every input behind it."""

    cost: ComputeCost
    demand: DemandCurve
    margin: Decimal
    decimals: int
    requests_waiting: int
    demand_factor: Decimal
    tokens_per_hour: int
    tokens_source: TokensSource
    throughput: Throughput
    tokens_per_hour_assumed: int
    tokens_measured_min: int
    window_s: int
    per_1k_atomic: int

    def call_price(self, tokens: int) -> int:
        return call_price_atomic(tokens, self.per_1k_atomic)

    def to_json(self) -> dict[str, Any]:
        """Ints for counts and atomic amounts, decimal strings for money and rates, no floats."""
        return {
            "price_per_1k_atomic": self.per_1k_atomic,
            "price_per_1k": _human(self.per_1k_atomic, self.decimals),
            "asset_decimals": self.decimals,
            "hourly_cost_usd": str(self.cost.hourly_usd),
            "accelerator_usd_per_hour": str(self.cost.accelerator_usd_per_hour),
            "power_kw": str(self.cost.power_kw),
            "energy_usd_per_kwh": str(self.cost.energy_usd_per_kwh),
            "depreciation_usd_per_hour": str(self.cost.depreciation_usd_per_hour),
            "margin": str(self.margin),
            "tokens_per_hour": self.tokens_per_hour,
            "tokens_per_hour_source": self.tokens_source,
            "tokens_per_hour_assumed": self.tokens_per_hour_assumed,
            "tokens_measured": self.throughput.tokens,
            "tokens_measured_min": self.tokens_measured_min,
            "measured_span_ms": self.throughput.span_ms,
            "metrics_window_s": self.window_s,
            "requests_waiting": self.requests_waiting,
            "demand_factor": str(self.demand_factor),
            "demand_factor_min": str(self.demand.factor_min),
            "demand_factor_max": str(self.demand.factor_max),
            "demand_step_per_waiting": str(self.demand.step_per_waiting),
        }


def _human(atomic: int, decimals: int) -> str:
    """Atomic units as a plain decimal string (``3000`` at 6 decimals is ``"0.003"``)."""
    text = format(Decimal(atomic).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def price_sheet(
    settings: InferenceSettings, *, throughput: Throughput, requests_waiting: int
) -> PriceSheet:
    """The price per 1k tokens for this throughput and queue, with all its inputs."""
    cost = ComputeCost.from_settings(settings)
    demand = DemandCurve.from_settings(settings)
    measured = (
        throughput.tokens >= settings.tokens_measured_min
        and throughput.span_ms >= _SPAN_MEASURED_MIN_MS
        and throughput.tokens_per_hour > 0
    )
    tokens_per_hour = throughput.tokens_per_hour if measured else settings.tokens_per_hour_assumed
    factor = demand.factor(requests_waiting)
    per_1k = price_per_1k_atomic(
        hourly_usd=cost.hourly_usd,
        tokens_per_hour=tokens_per_hour,
        margin=settings.margin,
        demand_factor=factor,
        decimals=settings.asset_decimals,
    )
    return PriceSheet(
        cost=cost,
        demand=demand,
        margin=settings.margin,
        decimals=settings.asset_decimals,
        requests_waiting=requests_waiting,
        demand_factor=factor,
        tokens_per_hour=tokens_per_hour,
        tokens_source="measured" if measured else "assumed",
        throughput=throughput,
        tokens_per_hour_assumed=settings.tokens_per_hour_assumed,
        tokens_measured_min=settings.tokens_measured_min,
        window_s=settings.metrics_window_s,
        per_1k_atomic=per_1k,
    )
