"""The compute-cost price model gives known prices for known inputs, exactly, and stays in its bounds.

Known inputs are worked by hand in the comments; Hypothesis checks that the
demand factor never leaves [min, max] and never falls as the queue grows,
and that every rounding is upward by less than one atomic unit (checked
against exact ``Fraction`` arithmetic). No float appears in a price or in the
price sheet's JSON.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from farthing.inference import (
    ComputeCost,
    DemandCurve,
    InferenceConfigError,
    InferenceSettings,
    Throughput,
    call_price_atomic,
    price_per_1k_atomic,
    price_sheet,
)

D = Decimal


def settings(**overrides: Any) -> InferenceSettings:
    values: dict[str, Any] = {
        "accelerator_usd_per_hour": D("2.00"),
        "power_kw": D("0.7"),
        "energy_usd_per_kwh": D("0.20"),
        "depreciation_usd_per_hour": D("0.36"),
        "margin": D("0.2"),
        "demand_factor_min": D("1"),
        "demand_factor_max": D("3"),
        "demand_step_per_waiting": D("0.1"),
        "tokens_per_hour_assumed": 1_000_000,
        "tokens_measured_min": 1000,
        "asset_decimals": 6,
    }
    values.update(overrides)
    return InferenceSettings(**values)


def test_hourly_cost_adds_accelerator_power_and_depreciation() -> None:
    # 2.00 + 0.7 kW × 0.20 $/kWh + 0.36 = 2.50 $/h
    assert ComputeCost(D("2.00"), D("0.7"), D("0.20"), D("0.36")).hourly_usd == D("2.50")


def test_known_inputs_give_known_prices() -> None:
    # 2.50 $/h ÷ 1,000,000 tokens/h × 1000 × 1.2 × 1.0 = 0.003 $ per 1k = 3000 atomic
    assert (
        price_per_1k_atomic(
            hourly_usd=D("2.50"),
            tokens_per_hour=1_000_000,
            margin=D("0.2"),
            demand_factor=D("1"),
            decimals=6,
        )
        == 3000
    )
    # the same at demand 2.5 (15 requests waiting × 0.1 + 1): 7500
    assert (
        price_per_1k_atomic(
            hourly_usd=D("2.50"),
            tokens_per_hour=1_000_000,
            margin=D("0.2"),
            demand_factor=D("2.5"),
            decimals=6,
        )
        == 7500
    )
    # 1 $/h ÷ 3,000,000 × 1000 = 0.000333… $ = 333.3… atomic, rounded up to 334
    assert (
        price_per_1k_atomic(
            hourly_usd=D("1"),
            tokens_per_hour=3_000_000,
            margin=D("0"),
            demand_factor=D("1"),
            decimals=6,
        )
        == 334
    )
    # a call of 1500 tokens at 3000 per 1k is 4500; one token is 3; a free price still costs 1
    assert call_price_atomic(1500, 3000) == 4500
    assert call_price_atomic(1, 3000) == 3
    assert call_price_atomic(1, 1) == 1
    assert call_price_atomic(10, 0) == 1


def test_price_sheet_uses_measured_throughput_once_there_is_enough() -> None:
    config = settings()
    assumed = price_sheet(config, throughput=Throughput(999, 60_000), requests_waiting=0)
    assert (assumed.tokens_source, assumed.tokens_per_hour, assumed.per_1k_atomic) == (
        "assumed",
        1_000_000,
        3000,
    )
    # 50,000 tokens in 60 s is 3,000,000 tokens/h: a third of the assumed price, rounded up
    measured = price_sheet(config, throughput=Throughput(50_000, 60_000), requests_waiting=0)
    assert (measured.tokens_source, measured.tokens_per_hour, measured.per_1k_atomic) == (
        "measured",
        3_000_000,
        1000,
    )
    # 15 waiting: demand 2.5
    busy = price_sheet(config, throughput=Throughput(50_000, 60_000), requests_waiting=15)
    assert (busy.demand_factor, busy.per_1k_atomic) == (D("2.5"), 2500)
    # 100 waiting: held at the maximum, 3
    jammed = price_sheet(config, throughput=Throughput(50_000, 60_000), requests_waiting=100)
    assert (jammed.demand_factor, jammed.per_1k_atomic) == (D("3"), 3000)


def _no_floats(value: object) -> None:
    assert not isinstance(value, float), value
    if isinstance(value, dict):
        for item in value.values():
            _no_floats(item)


def test_price_sheet_json_reports_every_input_without_floats() -> None:
    sheet = price_sheet(
        settings(), throughput=Throughput(50_000, 60_000), requests_waiting=15
    ).to_json()
    _no_floats(sheet)
    assert sheet["price_per_1k_atomic"] == 2500
    assert sheet["price_per_1k"] == "0.0025"
    expected = {
        "hourly_cost_usd": "2.500",
        "accelerator_usd_per_hour": "2.00",
        "power_kw": "0.7",
        "energy_usd_per_kwh": "0.20",
        "depreciation_usd_per_hour": "0.36",
        "margin": "0.2",
        "tokens_per_hour": 3_000_000,
        "tokens_per_hour_source": "measured",
        "requests_waiting": 15,
        "demand_factor": "2.5",
        "demand_factor_min": "1",
        "demand_factor_max": "3",
        "demand_step_per_waiting": "0.1",
        "asset_decimals": 6,
    }
    for key, value in expected.items():
        assert sheet[key] == value, key


def test_money_inputs_refuse_floats_and_bad_bounds() -> None:
    with pytest.raises(ValidationError, match="never a float"):
        InferenceSettings(margin=0.2)
    with pytest.raises(ValidationError, match="demand_factor_min"):
        InferenceSettings(demand_factor_min=D("4"), demand_factor_max=D("3"))
    with pytest.raises(InferenceConfigError):
        ComputeCost(D("1"), 0.5, D("1"), D("0"))  # type: ignore[arg-type]
    with pytest.raises(InferenceConfigError):
        price_per_1k_atomic(
            hourly_usd=D("1"), tokens_per_hour=0, margin=D("0"), demand_factor=D("1"), decimals=6
        )
    with pytest.raises(InferenceConfigError):
        call_price_atomic(0, 3000)
    with pytest.raises(InferenceConfigError):
        DemandCurve(D("1"), D("2"), D("0.1")).factor(-1)


def test_settings_read_decimals_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARTHING_INFERENCE_ACCELERATOR_USD_PER_HOUR", "1.25")
    monkeypatch.setenv("FARTHING_INFERENCE_MARGIN", "0.15")
    loaded = InferenceSettings()
    assert (loaded.accelerator_usd_per_hour, loaded.margin) == (D("1.25"), D("0.15"))


decimals = st.decimals(min_value=0, max_value=100, places=3, allow_nan=False, allow_infinity=False)
positive = st.decimals(
    min_value=D("0.001"), max_value=100, places=3, allow_nan=False, allow_infinity=False
)


@given(
    low=positive,
    span=decimals,
    step=decimals,
    waiting=st.integers(0, 10**9),
    more=st.integers(0, 10**6),
)
def test_demand_factor_stays_within_its_bounds_and_rises_with_the_queue(
    low: Decimal, span: Decimal, step: Decimal, waiting: int, more: int
) -> None:
    curve = DemandCurve(low, low + span, step)
    factor = curve.factor(waiting)
    assert low <= factor <= low + span
    assert curve.factor(waiting + more) >= factor


@given(
    hourly=decimals,
    tokens_per_hour=st.integers(1, 10**12),
    margin=decimals,
    demand=positive,
    places=st.integers(0, 18),
    tokens=st.integers(1, 10**7),
)
def test_prices_round_up_by_less_than_one_atomic_unit(
    hourly: Decimal,
    tokens_per_hour: int,
    margin: Decimal,
    demand: Decimal,
    places: int,
    tokens: int,
) -> None:
    per_1k = price_per_1k_atomic(
        hourly_usd=hourly,
        tokens_per_hour=tokens_per_hour,
        margin=margin,
        demand_factor=demand,
        decimals=places,
    )
    exact = (
        Fraction(hourly)
        / tokens_per_hour
        * 1000
        * (1 + Fraction(margin))
        * Fraction(demand)
        * 10**places
    )
    assert isinstance(per_1k, int)
    assert exact <= per_1k < exact + 1
    call = call_price_atomic(tokens, per_1k)
    exact_call = Fraction(tokens * per_1k, 1000)
    assert call >= 1
    assert exact_call <= call < max(exact_call + 1, 2)
