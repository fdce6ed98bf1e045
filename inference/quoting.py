"""What a chat completion costs before it runs: validate, count, price, and hold the price.

``ChatPricer.quote(raw_body)`` turns an OpenAI chat-completions request into a
:class:`CallQuote` or a :class:`Refusal` (an expected outcome, with an HTTP
status and a snake_case reason):

1. the body must be a JSON object under ``request_body_bytes_max``, nested
   at most ``JSON_DEPTH_MAX`` deep (``request_too_large``, ``json_too_deep``,
   ``invalid_json``; parsed by ``farthing.web.loads_bounded``), with a
   non-empty ``messages`` list (``invalid_request``);
2. only the fields in ``FORWARDED_FIELDS`` are accepted, and only they are
   forwarded: anything else (vLLM's ``use_beam_search``, ``min_tokens``,
   ``ignore_eos``, ``prompt_logprobs``, or a name the gateway does not know)
   is refused with one line naming it (``unsupported_field``), because the
   price does not cover the work it asks for; ``top_logprobs`` is at most
   ``TOP_LOGPROBS_MAX``;
3. ``stream`` (a bool) asks for server-sent events, and ``stream_options``
   (only with it: ``include_usage``, ``continuous_usage_stats``, bools) for
   the usage chunks the client wants (:class:`StreamAsk`); the upstream is
   always asked for both, so the real usage is known as the stream goes and
   at its end (``farthing.inference.streaming`` strips what was not asked
   for); ``best_of`` does not stream (``stream_best_of``); ``n`` (choices
   returned) and ``best_of`` (sequences generated, at least ``n``) are at
   most ``SEQUENCES_MAX``, and every sequence is priced;
3. ``model`` must be served upstream (404 ``model_not_found``);
4. ``max_tokens`` (or ``max_completion_tokens``) defaults to
   ``max_tokens_default`` and may not exceed ``max_tokens_max``
   (``max_tokens_over_limit``); the forwarded body carries the limit the
   buyer paid for, so the upstream cannot generate more;
5. the prompt is counted by the upstream's ``/tokenize`` with the model's own
   tokenizer and chat template, tools included, and prompt plus
   ``max_tokens`` must fit the context (``context_length_exceeded``);
6. price = the price sheet's per-1k price × (prompt tokens + ``max_tokens``
   × sequences), sequences being ``best_of`` if given, else ``n``.

A quote is **held** for ``quote_ttl_s``, keyed by a digest of the normalised
request: the buyer who is quoted a price in a 402 and retries the same request
with a payment is charged that price, even if the demand factor moved in
between (the payment must match the amount exactly). Only this process holds
quotes; behind a load balancer, pin buyers to a gateway or share nothing and
accept that a re-quote may ask for a fresh payment.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from farthing.inference.errors import InferenceUpstreamError, MetricsError
from farthing.inference.metrics import ThroughputWindow, sample_metrics
from farthing.inference.pricing import PriceSheet, price_sheet
from farthing.inference.settings import InferenceSettings
from farthing.inference.upstream import ModelInfo, TokenCount, Upstream
from farthing.web import JsonBodyError, loads_bounded

__all__ = [
    "FORWARDED_FIELDS",
    "JSON_DEPTH_MAX",
    "SEQUENCES_MAX",
    "TOP_LOGPROBS_MAX",
    "CallQuote",
    "ChatCall",
    "ChatPricer",
    "QuoteHold",
    "Refusal",
    "StreamAsk",
    "body_digest",
]

_MODELS_CACHE_S: Final = 30.0
_MODELS_RETRY_S: Final = 1.0  # an unknown model re-reads the list at most this often
# Chat fields vLLM's /tokenize understands; they change the rendered prompt.
_TOKENIZE_FIELDS: Final = (
    "tools",
    "add_generation_prompt",
    "continue_final_message",
    "add_special_tokens",
    "chat_template",
    "chat_template_kwargs",
)


# What a chat request may carry: OpenAI's chat-completions fields whose work
# the price covers (sampling shapes tokens, it does not add them), the
# tokenizer fields above, and ``n``/``best_of``, priced per sequence.
FORWARDED_FIELDS: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "best_of",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "stop",
        "seed",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        *_TOKENIZE_FIELDS,
    }
)
SEQUENCES_MAX: Final = 8  # n and best_of: each sequence is priced, this bounds one call
TOP_LOGPROBS_MAX: Final = 5
JSON_DEPTH_MAX: Final = 32  # JSON schemas in response_format and tools nest a few levels


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the gateway will not price, as an HTTP status and a snake_case reason."""

    status: int
    reason: str
    message: str
    param: str | None = None

    def body(self) -> dict[str, Any]:
        """OpenAI's error shape, so OpenAI clients show the message."""
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error" if self.status < 500 else "upstream_error",
                "param": self.param,
                "code": self.reason,
            }
        }


@dataclass(frozen=True, slots=True)
class StreamAsk:
    """A streamed call, and the usage chunks its client asked for (``stream_options``)."""

    include_usage: bool = False  # the last chunk: usage, no choices
    continuous_usage_stats: bool = False  # usage so far on every chunk


# What the upstream is always asked for on a streamed call: the usage so far
# on every chunk (what was sent is then counted exactly) and at the end.
UPSTREAM_STREAM_OPTIONS: Final = {"include_usage": True, "continuous_usage_stats": True}


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A validated request, normalised to what the upstream will be sent."""

    body: dict[str, Any]
    model: str
    prompt_tokens: int
    max_tokens: int
    digest: str
    choices: int = 1  # n: the choices answered
    sequences: int = 1  # best_of, else n: the sequences generated
    stream: StreamAsk | None = None  # None: one JSON answer

    @property
    def tokens(self) -> int:
        """What the buyer pays for: the prompt once and every token each sequence may generate."""
        return self.prompt_tokens + self.max_tokens * self.sequences


@dataclass(frozen=True, slots=True)
class CallQuote:
    """The price of one call, in atomic units, held until ``expires_at_s`` (monotonic)."""

    call: ChatCall
    per_1k_atomic: int
    amount: int
    expires_at_s: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-farthing-price-atomic", str(self.amount).encode()),
            (b"x-farthing-price-per-1k-atomic", str(self.per_1k_atomic).encode()),
            (b"x-farthing-tokens-priced", str(self.call.tokens).encode()),
        ]


def body_digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class QuoteHold:
    """Quotes by request digest, each until its expiry, at most ``size_max`` of them."""

    def __init__(self, *, ttl_s: float, size_max: int) -> None:
        self.ttl_s = ttl_s
        self.size_max = size_max
        self._quotes: OrderedDict[str, CallQuote] = OrderedDict()

    def __len__(self) -> int:
        return len(self._quotes)

    def get(self, digest: str, *, now_s: float) -> CallQuote | None:
        quote = self._quotes.get(digest)
        if quote is None or quote.expires_at_s <= now_s:
            return None
        return quote

    def put(self, quote: CallQuote, *, now_s: float) -> None:
        # Every quote lives ttl_s, so the oldest insertions expire first.
        while self._quotes and next(iter(self._quotes.values())).expires_at_s <= now_s:
            self._quotes.popitem(last=False)
        self._quotes[quote.call.digest] = quote
        self._quotes.move_to_end(quote.call.digest)
        while len(self._quotes) > self.size_max:
            self._quotes.popitem(last=False)


@dataclass
class _Models:
    items: dict[str, ModelInfo] = field(default_factory=dict)
    read_at_s: float = float("-inf")


class ChatPricer:
    """Prices chat calls against one upstream; one per gateway (it holds state)."""

    def __init__(self, settings: InferenceSettings, upstream: Upstream) -> None:
        self.settings = settings
        self.upstream = upstream
        self.window = ThroughputWindow(settings.metrics_window_s)
        self.hold = QuoteHold(ttl_s=settings.quote_ttl_s, size_max=settings.quotes_held_max)
        self.metrics_error: str | None = None
        self._metrics_read_at_s = float("-inf")
        self._metrics_lock = anyio.Lock()
        self._models = _Models()

    # ------------------------------------------------------------ the price sheet

    async def refresh_metrics(self, *, force: bool = False) -> None:
        """Read ``/metrics`` unless it was read within ``metrics_refresh_s``; never raises."""
        async with self._metrics_lock:
            now = time.monotonic()
            if not force and now - self._metrics_read_at_s < self.settings.metrics_refresh_s:
                return
            self._metrics_read_at_s = now
            try:
                text = await self.upstream.metrics()
                self.window.add(sample_metrics(text, at_ms=int(time.monotonic() * 1000)))
                self.metrics_error = None
            except (InferenceUpstreamError, MetricsError) as exc:
                # Price on what is known (or assumed); the sheet reports why.
                self.metrics_error = str(exc)

    async def sheet(self) -> PriceSheet:
        await self.refresh_metrics()
        latest = self.window.latest
        return price_sheet(
            self.settings,
            throughput=self.window.throughput(),
            requests_waiting=latest.requests_waiting if latest is not None else 0,
        )

    # ------------------------------------------------------------ one call

    async def quote(self, raw: bytes) -> CallQuote | Refusal:
        """Validate, count and price a chat-completions body (see the module doc)."""
        checked = self._parse(raw)
        if isinstance(checked, Refusal):
            return checked
        body, max_tokens, (choices, sequences), stream = checked
        # The client's own stream options are part of the digest: a held
        # quote is for one request as asked, streamed or not.
        digest = body_digest(body)
        if stream is not None:
            body = {**body, "stream_options": dict(UPSTREAM_STREAM_OPTIONS)}
        now = time.monotonic()
        held = self.hold.get(digest, now_s=now)
        if held is not None:
            return held
        model = body["model"]
        info = await self._model(model)
        if info is None:
            return Refusal(
                404, "model_not_found", f"the model {model!r} is not served here", "model"
            )
        counted = await self.upstream.tokenize(_tokenize_body(body))
        if not isinstance(counted, TokenCount):
            if counted.status == 404:
                return Refusal(404, "model_not_found", counted.error_message(), "model")
            return Refusal(400, "invalid_request", counted.error_message(), "messages")
        limit = counted.max_model_len or info.max_model_len
        if limit is not None and counted.count + max_tokens > limit:
            return Refusal(
                400,
                "context_length_exceeded",
                f"the prompt is {counted.count} tokens and max_tokens is {max_tokens}, "
                f"{counted.count + max_tokens} in all, but the model's context is {limit} tokens",
                "messages",
            )
        call = ChatCall(body, model, counted.count, max_tokens, digest, choices, sequences, stream)
        sheet = await self.sheet()
        quote = CallQuote(
            call,
            sheet.per_1k_atomic,
            sheet.call_price(call.tokens),
            time.monotonic() + self.settings.quote_ttl_s,
        )
        self.hold.put(quote, now_s=time.monotonic())
        return quote

    def _parse(
        self, raw: bytes
    ) -> tuple[dict[str, Any], int, tuple[int, int], StreamAsk | None] | Refusal:
        settings = self.settings
        if len(raw) > settings.request_body_bytes_max:
            return Refusal(
                413,
                "request_too_large",
                f"the request is over {settings.request_body_bytes_max} bytes",
            )
        try:
            body = loads_bounded(
                raw, depth_max=JSON_DEPTH_MAX, bytes_max=settings.request_body_bytes_max
            )
        except JsonBodyError as exc:
            if exc.reason in ("json_too_deep", "invalid_text"):
                return Refusal(400, exc.reason, str(exc))
            return Refusal(400, "invalid_json", f"the request body is not JSON ({exc})")
        if not isinstance(body, dict):
            return Refusal(400, "invalid_json", "the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return Refusal(
                400, "invalid_request", "name a model (GET /v1/models lists them)", "model"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return Refusal(400, "invalid_request", "messages must be a non-empty list", "messages")
        unknown = sorted(key for key in body if key not in FORWARDED_FIELDS)
        if unknown:
            return Refusal(
                400,
                "unsupported_field",
                f"the gateway does not forward {', '.join(unknown)[:300]}: its price does "
                "not cover that work; remove them",
                unknown[0],
            )
        counts = _sequences(body)
        if isinstance(counts, Refusal):
            return counts
        stream = _stream(body, counts)
        if isinstance(stream, Refusal):
            return stream
        top = _top_logprobs(body)
        if top is not None:
            return top
        max_tokens = _max_tokens(body, settings)
        if isinstance(max_tokens, Refusal):
            return max_tokens
        normalised = dict(body)
        # Both names carry the paid limit, so no reading of the request lets
        # the upstream generate more than was paid for.
        normalised["max_tokens"] = max_tokens
        normalised["max_completion_tokens"] = max_tokens
        normalised.pop("stream", None)
        normalised.pop("stream_options", None)
        if stream is not None:
            normalised["stream"] = True
            normalised["stream_options"] = {
                "include_usage": stream.include_usage,
                "continuous_usage_stats": stream.continuous_usage_stats,
            }
        return normalised, max_tokens, counts, stream

    async def _model(self, name: str) -> ModelInfo | None:
        now = time.monotonic()
        cache = self._models
        stale = now - cache.read_at_s > _MODELS_CACHE_S
        if stale or (name not in cache.items and now - cache.read_at_s > _MODELS_RETRY_S):
            models = await self.upstream.models()
            self._models = cache = _Models({m.id: m for m in models}, time.monotonic())
        return cache.items.get(name)


def _whole_number(body: dict[str, Any], key: str, least: int, reason: str) -> int | Refusal | None:
    """``body[key]``: ``None`` when absent, else an int of at least ``least`` or a refusal."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        return Refusal(400, reason, f"{key} must be a whole number >= {least}", key)
    return value


def _max_tokens(body: dict[str, Any], settings: InferenceSettings) -> int | Refusal:
    given: list[int] = []
    for key in ("max_completion_tokens", "max_tokens"):
        value = _whole_number(body, key, 1, "invalid_max_tokens")
        if value is None:
            continue
        if isinstance(value, Refusal):
            return value
        given.append(value)
    if len(set(given)) > 1:
        return Refusal(
            400, "max_tokens_conflict", "max_tokens and max_completion_tokens differ", "max_tokens"
        )
    value = given[0] if given else settings.max_tokens_default
    if value > settings.max_tokens_max:
        return Refusal(
            400,
            "max_tokens_over_limit",
            f"max_tokens is {value}, over this gateway's limit of {settings.max_tokens_max}",
            "max_tokens",
        )
    return value


def _sequences(body: dict[str, Any]) -> tuple[int, int] | Refusal:
    """``(n, sequences)``: the choices answered and the sequences generated (``best_of``)."""
    values: dict[str, int] = {}
    for key in ("n", "best_of"):
        value = _whole_number(body, key, 1, "invalid_n")
        if value is None:
            continue
        if isinstance(value, Refusal):
            return value
        if value > SEQUENCES_MAX:
            return Refusal(
                400,
                "n_over_limit",
                f"{key} is {value}, over this gateway's limit of {SEQUENCES_MAX} per call",
                key,
            )
        values[key] = value
    choices = values.get("n", 1)
    sequences = values.get("best_of", choices)
    if sequences < choices:
        return Refusal(
            400,
            "best_of_below_n",
            f"best_of ({sequences}) must be at least n ({choices})",
            "best_of",
        )
    return choices, sequences


def _stream(body: dict[str, Any], counts: tuple[int, int]) -> StreamAsk | Refusal | None:
    """``stream`` and ``stream_options`` as asked: None for one JSON answer."""
    stream, options = body.get("stream"), body.get("stream_options")
    if stream is not None and not isinstance(stream, bool):
        return Refusal(400, "invalid_stream", "stream must be true or false", "stream")
    if not stream:
        if options is not None:
            return Refusal(
                400, "invalid_stream", "stream_options is only allowed with stream", "stream"
            )
        return None
    if counts[1] != counts[0]:
        return Refusal(
            400, "stream_best_of", "best_of above n cannot stream; drop best_of", "best_of"
        )
    if options is None:
        return StreamAsk()
    known = ("include_usage", "continuous_usage_stats")
    if not isinstance(options, dict) or any(
        key not in known or not isinstance(value, bool) for key, value in options.items()
    ):
        return Refusal(
            400,
            "invalid_stream",
            "stream_options may hold include_usage and continuous_usage_stats, true or false",
            "stream_options",
        )
    return StreamAsk(
        options.get("include_usage", False), options.get("continuous_usage_stats", False)
    )


def _top_logprobs(body: dict[str, Any]) -> Refusal | None:
    value = _whole_number(body, "top_logprobs", 0, "invalid_top_logprobs")
    if value is None or isinstance(value, Refusal):
        return value
    if value > TOP_LOGPROBS_MAX:
        return Refusal(
            400,
            "top_logprobs_over_limit",
            f"top_logprobs is {value}, over this gateway's limit of {TOP_LOGPROBS_MAX}",
            "top_logprobs",
        )
    return None


def _tokenize_body(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": body["messages"],
        "add_generation_prompt": True,
    }
    for key in _TOKENIZE_FIELDS:
        if key in body:
            out[key] = body[key]
    return out
