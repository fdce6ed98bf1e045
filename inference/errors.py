"""Exceptions raised by ``farthing.inference``.

::

    FarthingError                          (farthing.errors)
    └── InferenceError
        ├── InferenceConfigError           a setting or option that cannot work
        ├── ModelBuildError                the tiny-model builder failed
        ├── ServerStartError               vLLM exited or was not healthy in time
        ├── InferenceUpstreamError         the vLLM server answered badly or not at all
        │   ├── UpstreamUnavailableError   nothing listens at the URL (connect refused)
        │   └── UpstreamTimeoutError       it did not answer within the stated timeout
        ├── MetricsError                   /metrics could not be read or parsed
        └── StructuredOutputError          the model's answer does not fit the schema

The gateway turns upstream errors into HTTP answers (503, 504, 502) with an
OpenAI-style JSON error body; a refused request (``max_tokens`` over the limit,
an unknown model, a prompt over the context length) is a value with a
snake_case reason (``farthing.inference.quoting.Refusal``), never an exception.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = [
    "InferenceConfigError",
    "InferenceError",
    "InferenceUpstreamError",
    "MetricsError",
    "ModelBuildError",
    "ServerStartError",
    "StructuredOutputError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class InferenceError(FarthingError):
    """Root of every error raised deliberately by ``farthing.inference``."""


class InferenceConfigError(InferenceError, ValueError):
    """A setting, option or price input that cannot work; the message says which."""


class ModelBuildError(InferenceError):
    """The tiny-model builder could not build the model; ``output`` holds what it printed."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ServerStartError(InferenceError):
    """The vLLM server exited, or did not answer ``/health`` within its start-up timeout.

    The message is one line; ``log_tail`` holds the end of vLLM's log, which
    says why, for the caller to show.
    """

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class InferenceUpstreamError(InferenceError):
    """The vLLM server answered something unusable, or its connection broke mid-answer."""


class UpstreamUnavailableError(InferenceUpstreamError):
    """Nothing answers at the upstream URL: the server is down or not started."""


class UpstreamTimeoutError(InferenceUpstreamError):
    """The upstream did not answer within the stated timeout."""


class MetricsError(InferenceError):
    """vLLM's Prometheus ``/metrics`` could not be fetched or lacks a needed series."""


class StructuredOutputError(InferenceError):
    """A structured answer is not valid JSON for its schema (the model did not comply)."""
