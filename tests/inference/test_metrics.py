"""vLLM's Prometheus text is read correctly, and token counters become tokens per hour.

The sample is ``data/vllm-0.32.0-cpu-metrics.txt``, captured from a real vLLM
0.32.0 (CPU) serving the tiny model; ``test_vllm.py`` also reads a live one.
The window is driven with explicit millisecond clocks.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from farthing.inference import (
    MetricsError,
    MetricsSample,
    ThroughputWindow,
    parse_metrics,
    sample_metrics,
)
from tests.inference.fake_vllm import METRICS_SAMPLE


def test_captured_vllm_metrics_parse() -> None:
    text = METRICS_SAMPLE.read_text()
    values = parse_metrics(text)
    assert values["vllm:prompt_tokens_total"] == Decimal(1022)
    assert values["vllm:generation_tokens_total"] == Decimal(1083)
    assert values["vllm:num_requests_waiting"] == 0
    sample = sample_metrics(text, at_ms=5)
    assert sample == MetricsSample(5, 1022, 1083, 0, 0)
    assert sample.tokens_total == 2105


def test_series_are_summed_and_odd_lines_skipped() -> None:
    text = """\
# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="a"} 3.0
vllm:num_requests_waiting{engine="1",model_name="a {b}"} 4.0
vllm:prompt_tokens_total{model_name="quote \\" inside"} 10
vllm:generation_tokens_total 5 1700000000000
vllm:e2e_request_latency_seconds_bucket{le="+Inf"} +Inf
vllm:something NaN
not a sample line
"""
    values = parse_metrics(text)
    assert values["vllm:num_requests_waiting"] == 7
    assert values["vllm:prompt_tokens_total"] == 10
    assert values["vllm:generation_tokens_total"] == 5
    assert "vllm:something" not in values
    assert sample_metrics(text, at_ms=0).requests_waiting == 7


def test_text_without_vllm_counters_is_an_error() -> None:
    with pytest.raises(MetricsError, match="vllm:prompt_tokens_total"):
        sample_metrics("process_cpu_seconds_total 12.0\n", at_ms=0)


def sample(at_ms: int, prompt: int, generated: int, waiting: int = 0) -> MetricsSample:
    return MetricsSample(at_ms, prompt, generated, waiting, 0)


def test_window_measures_tokens_per_hour() -> None:
    window = ThroughputWindow(60)
    assert window.throughput().tokens_per_hour == 0
    window.add(sample(0, 1000, 1000))
    window.add(sample(30_000, 1500, 2000))
    window.add(sample(60_000, 2000, 3000))
    # 3000 tokens in 60 s = 180,000 per hour
    assert window.throughput().tokens == 3000
    assert window.throughput().tokens_per_hour == 180_000


def test_window_forgets_samples_older_than_the_window() -> None:
    window = ThroughputWindow(60)
    for second in range(0, 181, 30):
        window.add(sample(second * 1000, second * 100, 0))
    # kept: the sample at 120 s (the window's start) through 180 s
    assert [s.at_ms for s in window] == [120_000, 150_000, 180_000]
    assert window.throughput().tokens_per_hour == 6000 * 60  # 100 tokens/s


def test_a_counter_reset_starts_the_window_again() -> None:
    window = ThroughputWindow(300)
    window.add(sample(0, 5000, 5000))
    window.add(sample(10_000, 6000, 6000))
    window.add(sample(20_000, 10, 20))  # vLLM restarted
    assert len(window) == 1
    assert window.throughput().tokens == 0
    with pytest.raises(MetricsError, match="time order"):
        window.add(sample(5_000, 10, 20))
