"""farthing.inference: vLLM serving the agents' model, and a gateway that sells it per call.

The names below are the public surface; the modules hold more detail:
``settings`` (``InferenceSettings``, env prefix ``FARTHING_INFERENCE_``),
``command`` (the vLLM argv and environment per device), ``server``
(``VllmServer``: start, wait for ``/health``, stop the process group),
``builder`` and ``tiny_model`` (the tiny random Llama for tests), ``chat``
(``ChatOpenAI`` for a vLLM base URL, answers held to a JSON schema),
``metrics`` (vLLM's Prometheus counters), ``pricing`` (the compute-cost
model), ``upstream`` (the vLLM server over HTTP), ``quoting`` (what a call
costs before it runs), ``gateway`` (the paid OpenAI-compatible proxy) and
``cli`` (``farthing inference …``). Start with ``docs/inference.md``.

Importing this package is light: LangChain and the paywall (with its chain
stack) are imported only by the functions that use them.
"""

from farthing.inference.builder import build_tiny_model
from farthing.inference.chat import (
    BuyDecision,
    aclose_chat_model,
    astructured_answer,
    chat_model,
    close_chat_model,
    response_format,
    strict_schema,
    structured_answer,
)
from farthing.inference.command import detect_device, reliable_flags, vllm_command, vllm_env
from farthing.inference.errors import (
    InferenceConfigError,
    InferenceError,
    InferenceUpstreamError,
    MetricsError,
    ModelBuildError,
    ServerStartError,
    StructuredOutputError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from farthing.inference.gateway import CHAT_PATH, Gateway, GatewayPayment
from farthing.inference.metrics import (
    MetricsSample,
    Throughput,
    ThroughputWindow,
    parse_metrics,
    sample_metrics,
)
from farthing.inference.pricing import (
    ComputeCost,
    DemandCurve,
    PriceSheet,
    call_price_atomic,
    price_per_1k_atomic,
    price_sheet,
)
from farthing.inference.quoting import CallQuote, ChatCall, ChatPricer, QuoteHold, Refusal
from farthing.inference.server import VllmServer
from farthing.inference.settings import InferenceSettings
from farthing.inference.upstream import ModelInfo, TokenCount, Upstream, UpstreamAnswer

__all__ = [
    "CHAT_PATH",
    "BuyDecision",
    "CallQuote",
    "ChatCall",
    "ChatPricer",
    "ComputeCost",
    "DemandCurve",
    "Gateway",
    "GatewayPayment",
    "InferenceConfigError",
    "InferenceError",
    "InferenceSettings",
    "InferenceUpstreamError",
    "MetricsError",
    "MetricsSample",
    "ModelBuildError",
    "ModelInfo",
    "PriceSheet",
    "QuoteHold",
    "Refusal",
    "ServerStartError",
    "StructuredOutputError",
    "Throughput",
    "ThroughputWindow",
    "TokenCount",
    "Upstream",
    "UpstreamAnswer",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "VllmServer",
    "aclose_chat_model",
    "astructured_answer",
    "build_tiny_model",
    "call_price_atomic",
    "chat_model",
    "close_chat_model",
    "detect_device",
    "parse_metrics",
    "price_per_1k_atomic",
    "price_sheet",
    "reliable_flags",
    "response_format",
    "sample_metrics",
    "strict_schema",
    "structured_answer",
    "vllm_command",
    "vllm_env",
]
