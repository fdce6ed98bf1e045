"""Throughput and queue depth, read from vLLM's Prometheus ``/metrics``.

vLLM exports counters of tokens processed (``vllm:prompt_tokens_total``,
``vllm:generation_tokens_total``) and gauges of its queue
(``vllm:num_requests_waiting``, ``vllm:num_requests_running``), one series per
engine and model. A :class:`MetricsSample` sums each over its series.

:class:`ThroughputWindow` keeps the samples of the last ``window_s`` seconds
and turns the growth of the token counters into **tokens per hour**, in
integer arithmetic (token counts are whole; the clock is read in
milliseconds). A counter that goes down means vLLM restarted, so the samples
before the restart are dropped rather than read as negative throughput.

The text format is parsed here (a few lines of code) rather than with
``prometheus_client``, which the main environment does not need otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from farthing.inference.errors import MetricsError

__all__ = [
    "GENERATION_TOKENS",
    "PROMPT_TOKENS",
    "REQUESTS_RUNNING",
    "REQUESTS_WAITING",
    "MetricsSample",
    "Throughput",
    "ThroughputWindow",
    "parse_metrics",
    "sample_metrics",
]

PROMPT_TOKENS: Final = "vllm:prompt_tokens_total"
GENERATION_TOKENS: Final = "vllm:generation_tokens_total"
REQUESTS_WAITING: Final = "vllm:num_requests_waiting"
REQUESTS_RUNNING: Final = "vllm:num_requests_running"
_MS_PER_HOUR: Final = 3_600_000
_SAMPLES_MAX: Final = 10_000


def parse_metrics(text: str) -> dict[str, Decimal]:
    """Each metric name's value summed over its label sets (comments and NaN/Inf skipped)."""
    totals: dict[str, Decimal] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parsed = _sample_line(line)
        if parsed is None:
            continue
        name, value = parsed
        totals[name] = totals.get(name, Decimal(0)) + value
    return totals


def _sample_line(line: str) -> tuple[str, Decimal] | None:
    brace = line.find("{")
    if brace == -1:
        name, _, rest = line.partition(" ")
    else:
        name, rest = line[:brace], _after_labels(line, brace)
    fields = rest.split()
    if not name or not fields:
        return None
    try:
        value = Decimal(fields[0])
    except InvalidOperation:
        return None  # "+Inf", "NaN" and the like carry no count
    if not value.is_finite():
        return None
    return name.strip(), value


def _after_labels(line: str, brace: int) -> str:
    """The text after a ``{...}`` label set, honouring quoted values with braces or escapes."""
    quoted = False
    index = brace + 1
    while index < len(line):
        char = line[index]
        if quoted and char == "\\":
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return line[index + 1 :]
        index += 1
    return ""


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """One reading of ``/metrics``: token counters (whole tokens) and the queue, at ``at_ms``."""

    at_ms: int  # a monotonic clock, in milliseconds
    prompt_tokens_total: int
    generation_tokens_total: int
    requests_waiting: int
    requests_running: int

    @property
    def tokens_total(self) -> int:
        return self.prompt_tokens_total + self.generation_tokens_total


def sample_metrics(text: str, *, at_ms: int) -> MetricsSample:
    """A :class:`MetricsSample` from Prometheus text, or ``MetricsError`` if a series is missing."""
    values = parse_metrics(text)
    missing = [n for n in (PROMPT_TOKENS, GENERATION_TOKENS, REQUESTS_WAITING) if n not in values]
    if missing:
        raise MetricsError(f"the metrics lack {', '.join(missing)}: is this a vLLM server?")
    return MetricsSample(
        at_ms=at_ms,
        prompt_tokens_total=_whole(values, PROMPT_TOKENS),
        generation_tokens_total=_whole(values, GENERATION_TOKENS),
        requests_waiting=_whole(values, REQUESTS_WAITING),
        requests_running=_whole(values, REQUESTS_RUNNING),
    )


def _whole(values: Mapping[str, Decimal], name: str) -> int:
    value = values.get(name, Decimal(0))
    if value < 0:
        raise MetricsError(f"{name} is negative ({value})")
    return int(value)  # counters are whole numbers printed as "464.0"


@dataclass(frozen=True, slots=True)
class Throughput:
    """Tokens processed over a span of the window, and the hourly rate they make."""

    tokens: int
    span_ms: int

    @property
    def tokens_per_hour(self) -> int:
        if self.span_ms <= 0:
            return 0
        return self.tokens * _MS_PER_HOUR // self.span_ms


class ThroughputWindow:
    """The samples of the last ``window_s`` seconds; :meth:`throughput` over them."""

    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise MetricsError("the metrics window must be positive")
        self.window_ms = int(window_s * 1000)
        self._samples: deque[MetricsSample] = deque(maxlen=_SAMPLES_MAX)

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[MetricsSample]:
        return iter(self._samples)

    @property
    def latest(self) -> MetricsSample | None:
        return self._samples[-1] if self._samples else None

    def add(self, sample: MetricsSample) -> None:
        last = self.latest
        if last is not None:
            if sample.at_ms < last.at_ms:
                raise MetricsError("metrics samples must be added in time order")
            if (
                sample.prompt_tokens_total < last.prompt_tokens_total
                or sample.generation_tokens_total < last.generation_tokens_total
            ):
                self._samples.clear()  # the counters reset: vLLM restarted
        self._samples.append(sample)
        # Keep one sample at or before the window's start, so the window is full.
        horizon = sample.at_ms - self.window_ms
        while len(self._samples) > 1 and self._samples[1].at_ms <= horizon:
            self._samples.popleft()

    def throughput(self) -> Throughput:
        """Tokens (prompt + generated) processed between the oldest and newest sample."""
        if len(self._samples) < 2:
            return Throughput(0, 0)
        first, last = self._samples[0], self._samples[-1]
        return Throughput(last.tokens_total - first.tokens_total, last.at_ms - first.at_ms)
