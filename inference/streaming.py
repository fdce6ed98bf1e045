"""A streamed chat completion: vLLM's server-sent events relayed as they come, metered per token.

:class:`StreamedChat` is the gateway's answer to ``"stream": true``. It asks
vLLM for the stream with ``stream_options`` ``include_usage`` and
``continuous_usage_stats`` forced on (``farthing.inference.quoting``), so
every chunk says how many tokens were generated so far and the last one the
real usage, and relays each event to the client as soon as it is read: no
buffering. Each relayed event is rebuilt from its JSON ``data`` alone
(:class:`Tally`): vLLM's ``event:``, ``id:`` and comment lines are dropped,
so nothing upstream sends can pose as the gateway's own events; the usage
the client did not ask for is stripped (the last, choice-less usage chunk
without ``include_usage``; the per-chunk usage without
``continuous_usage_stats``).

Paid through a usage-charging scheme, the paywall puts a meter in the
request's scope (``farthing.paywall.schemes.metering``): after each event
is handed to the server the meter learns the price of the usage sent so far
(prompt plus completion tokens, at the quote's price per 1k, rounded up,
never above the quote); when the stream ends the charge is made final:

- vLLM ended it (``data: [DONE]``): the price of vLLM's last ``usage``, the
  only source of truth, capped at the quote; with no usage at all, the
  price of what was sent (below);
- the client left, vLLM broke off, the stream outlived ``upstream_timeout_s``,
  or the meter stopped it (its hold lapsed): the price of the usage sent,
  read from the last sent chunk's ``usage`` (or, if vLLM sent none, the
  quoted prompt plus one token per sent chunk that carried text or a tool
  call); nothing at all if not one event had been sent.

The client learns the charge in one last event before ``data: [DONE]``::

    event: payment-response
    data: {"id": ..., "object": "chat.completion.chunk", "created": ..., "model": ...,
           "choices": [], "payment_response": {<the PAYMENT-RESPONSE object>}}

OpenAI clients read it as one more choice-less chunk (like the usage chunk);
a cut stream ends with it and a ``data: {"error": ...}`` event instead of
``[DONE]``. An upstream answer that is not a stream (an error, or JSON)
goes out whole, with ``PAYMENT-RESPONSE`` as a header when it is charged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.responses import Response

from farthing.inference.errors import InferenceUpstreamError
from farthing.inference.pricing import call_price_atomic
from farthing.inference.quoting import CallQuote, Refusal, StreamAsk

if TYPE_CHECKING:
    from farthing.inference.upstream import Upstream, UpstreamAnswer, UpstreamStream

__all__ = [
    "PAYMENT_EVENT",
    "SseEvent",
    "SseReader",
    "StreamedChat",
    "Tally",
    "usage_tokens",
]

PAYMENT_EVENT: Final = "payment-response"
_LINE_BYTES_MAX: Final = 1024 * 1024  # one event's line; vLLM's chunks are a few hundred bytes
_USAGE_TOKENS_MAX: Final = 10**9  # far above any context; a larger count is not believed
_FINAL_SEND_S: Final = 1.0  # the last events to a client that stopped reading
_PAYMENT_HEADER: Final = b"payment-response"


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its ``event:`` name (None for a plain message) and its data."""

    name: str | None
    data: str


class SseReader:
    """Server-sent events from bytes as they arrive (the WHATWG framing; lines bounded)."""

    def __init__(self, *, line_bytes_max: int = _LINE_BYTES_MAX) -> None:
        self.line_bytes_max = line_bytes_max
        self._buffer = bytearray()
        self._name: str | None = None
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        events: list[SseEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.line_bytes_max:
                    raise InferenceUpstreamError(
                        f"the model server sent a stream line over {self.line_bytes_max} bytes"
                    )
                return events
            line = bytes(self._buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buffer[: end + 1]
            if not line:
                if self._data:
                    events.append(SseEvent(self._name, "\n".join(self._data)))
                self._name, self._data, self._size = None, [], 0
                continue
            self._size += len(line)
            if self._size > self.line_bytes_max:
                raise InferenceUpstreamError(
                    f"the model server sent a stream event over {self.line_bytes_max} bytes"
                )
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._name = value


def usage_tokens(usage: Any) -> int | None:
    """Prompt plus completion tokens of a ``usage`` object, or None if it is not believable."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    counts = (prompt, completion)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    tokens = prompt + completion
    return tokens if 0 < tokens <= _USAGE_TOKENS_MAX else None


@dataclass
class Tally:
    """What a stream has shown and sent: vLLM's usage, and the events handed to the client."""

    quote: CallQuote
    ask: StreamAsk
    usage_seen: int | None = None  # tokens in the last usage vLLM sent
    usage_sent: int | None = None  # tokens in the usage of the last event sent
    text_events_sent: int = 0  # events sent with text or a tool call (when vLLM sends no usage)
    events_sent: int = 0
    error: bool = False  # vLLM sent an error event: the stream ends after it
    last: dict[str, Any] = field(default_factory=dict)  # id, created, model of the last chunk
    _pending_usage: int | None = None
    _pending_text: bool = False

    def take(self, data: str) -> bytes | None:
        """One upstream event's data: the bytes to send for it, or None to send nothing."""
        try:
            chunk = json.loads(data)
        except ValueError:
            return None  # not JSON: nothing a client could use
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk:
            self.error = True
            return _frame({"error": chunk["error"]})
        usage = usage_tokens(chunk.get("usage"))
        if usage is not None:
            self.usage_seen = usage
        self.last = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
        choices = chunk.get("choices")
        if not choices:  # the usage chunk (include_usage): no choices
            if not self.ask.include_usage:
                return None
        elif not self.ask.continuous_usage_stats:
            if self.ask.include_usage:
                chunk["usage"] = None  # as OpenAI sends every chunk before the last
            else:
                chunk.pop("usage", None)
        self._pending_usage = usage
        self._pending_text = _has_text(choices)
        return _frame(chunk)

    def sent(self) -> None:
        """The event :meth:`take` returned was handed to the server."""
        self.events_sent += 1
        if self._pending_usage is not None:
            self.usage_sent = self._pending_usage
        if self._pending_text:
            self.text_events_sent += 1

    def _price(self, tokens: int) -> int:
        if tokens <= 0:
            return 0
        return min(self.quote.amount, call_price_atomic(tokens, self.quote.per_1k_atomic))

    def sent_charge(self) -> int:
        """The price of what was sent: its last usage, or the quoted prompt and one token an event."""
        if self.events_sent == 0:
            return 0
        if self.usage_sent is not None:
            return self._price(self.usage_sent)
        return self._price(self.quote.call.prompt_tokens + self.text_events_sent)

    def final_charge(self) -> int:
        """The price of vLLM's last usage (a stream that ended); what was sent if it sent none."""
        if self.usage_seen is None:
            return self.sent_charge()
        return self._price(self.usage_seen)


def _has_text(choices: Any) -> bool:
    if not isinstance(choices, list):
        return False
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
    return False


def _frame(data: dict[str, Any], name: str | None = None) -> bytes:
    # ASCII: a lone surrogate in upstream text stays an escape, never a failed encode.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    head = f"event: {name}\n" if name is not None else ""
    return f"{head}data: {text}\n\n".encode()


@dataclass
class _State:
    responded: bool = False  # a response was started (streamed or whole)
    started: bool = False
    done: bool = False  # vLLM ended the stream with [DONE]
    stopped: bool = False  # the meter said stop
    client_gone: bool = False
    failure: Refusal | None = None


class StreamedChat(Response):
    """The answer to one streamed chat call; ``meter`` None streams without charging."""

    def __init__(
        self,
        upstream: Upstream,
        quote: CallQuote,
        meter: Any,
        *,
        deadline_s: float,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        super().__init__()
        self.upstream = upstream
        self.quote = quote
        self.meter = meter  # farthing.paywall.schemes.metering.Meter
        self.deadline_s = deadline_s
        self.extra_headers = headers
        assert quote.call.stream is not None
        self.tally = Tally(quote, quote.call.stream)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = _State()
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    state.client_gone = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                with anyio.move_on_after(self.deadline_s):
                    try:
                        await self._relay(send, state)
                    except OSError:  # the server says the client is gone
                        state.client_gone = True
                if not (state.done or state.failure or state.client_gone):
                    state.failure = Refusal(504, "upstream_timeout", "the stream ran out of time")
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(send, state)

    async def _relay(self, send: Any, state: _State) -> None:
        from farthing.inference.gateway import upstream_refusal

        try:
            async with self.upstream.stream_chat(self.quote.call.body) as answer:
                if answer.status >= 300 or "text/event-stream" not in answer.content_type:
                    state.done = True
                    await self._whole(send, await answer.read(), state)
                    return
                await self._pump(send, answer, state)
        except InferenceUpstreamError as exc:
            state.failure = upstream_refusal(exc)
            if not state.started:
                state.done = True
                await _send_whole(send, state, *_refusal_answer(state.failure))

    async def _pump(self, send: Any, answer: UpstreamStream, state: _State) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
            *self.extra_headers,
        ]
        state.responded = state.started = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        reader, tally, meter = SseReader(), self.tally, self.meter
        chunks = answer.chunks()
        async for chunk in chunks:
            for event in reader.feed(chunk):
                if event.name is not None and event.name != "message":
                    continue  # only the gateway names events
                if event.data.strip() == "[DONE]":
                    state.done = True
                    await answer.drain(chunks)  # the connection goes back to the pool
                    return
                out = tally.take(event.data)
                if out is None:
                    continue
                await send({"type": "http.response.body", "body": out, "more_body": True})
                tally.sent()
                if tally.error:
                    state.failure = Refusal(502, "upstream_error", "the model server failed")
                    return
                if meter is not None and not await meter.progress(tally.sent_charge()):
                    state.stopped = True
                    state.failure = Refusal(402, "charge_lapsed", "the stream's charge lapsed")
                    return
        state.failure = Refusal(502, "upstream_failed", "the model server ended the stream early")

    async def _whole(self, send: Any, answer: UpstreamAnswer, state: _State) -> None:
        """An upstream answer that did not stream: an error passes on, JSON is charged its usage."""
        from farthing.inference.gateway import usage_charge

        if answer.status >= 500:
            refusal = Refusal(
                502, "upstream_error", f"the model server failed: {answer.error_message()}"
            )
            await _send_whole(send, state, *_refusal_answer(refusal))
            return
        headers = list(self.extra_headers)
        if answer.status < 300 and self.meter is not None:
            charge = usage_charge(answer.body, self.quote)
            receipt = await self.meter.finish(self.quote.amount if charge is None else charge)
            headers.append((_PAYMENT_HEADER, receipt.header.encode()))
        kind = answer.content_type or "application/json"
        await _send_whole(send, state, answer.status, answer.body, kind, headers)

    async def _end(self, send: Any, state: _State) -> None:
        """The charge made final, then (to a client still there) the last events."""
        if not state.responded and not state.client_gone:
            # Out of time before vLLM answered at all: nothing was sent, nothing is charged.
            refusal = state.failure or Refusal(504, "upstream_timeout", "no answer in time")
            with anyio.move_on_after(_FINAL_SEND_S):
                await _send_whole(send, state, *_refusal_answer(refusal))
            return
        if not state.started:
            return
        tally, receipt = self.tally, None
        if self.meter is not None:
            amount = tally.final_charge() if state.done else tally.sent_charge()
            receipt = await self.meter.finish(amount)
        if state.client_gone:
            return
        tail = b""
        if receipt is not None:
            event = {**tally.last, "object": "chat.completion.chunk", "choices": []}
            event.setdefault("created", int(time.time()))
            event["payment_response"] = receipt.settlement
            tail += _frame(event, PAYMENT_EVENT)
        if state.done:
            tail += b"data: [DONE]\n\n"
        elif state.failure is not None and not tally.error:
            tail += _frame(state.failure.body())
        with anyio.move_on_after(_FINAL_SEND_S):
            try:
                await send({"type": "http.response.body", "body": tail, "more_body": False})
            except OSError:
                pass  # the client left as the stream ended


def _refusal_answer(refusal: Refusal) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
    body = json.dumps(refusal.body(), separators=(",", ":")).encode()
    return refusal.status, body, "application/json", [(b"cache-control", b"no-store")]


async def _send_whole(
    send: Any,
    state: _State,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    state.started = False  # nothing streamed: no last events
    state.responded = True
    out = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})
