"""A paid answer that streams: booked when its last event says what was charged, not before.

A seller that charges usage (``batch-settlement``, ``upto``) streams its
answer (server-sent events, ``text/event-stream``) before it knows the
charge, so its 2xx carries no ``PAYMENT-RESPONSE`` header. The charge comes
in the stream's own last event (``event: payment-response``, whose data's
``payment_response`` is the object the header would carry; docs/inference.md).
:class:`PaymentAuth` hands such an answer here instead of booking it: its body
is wrapped (:class:`MeteredBody`, :class:`AsyncMeteredBody`) so that, as the
caller reads it (LangChain's ``stream``, the OpenAI SDK, ``iter_lines``), the
event is spotted and booked at once through
:meth:`~farthing.agents.payer.Payer.conclude`, with the same client checks as
the header: the charge at most the ceiling, the channel state consistent. So
the books count the charged amount as spent, and the rest of the ceiling's
reservation is released. A stream that ends (or is closed) without the event
is a possible spend: the reservation stays open, the channel is released,
and the next corrective 402 or reconciliation books what the seller claims.
The payment's outcome on ``response.extensions`` is updated either way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
import httpx

from farthing.agents.challenge import SellerAnswer
from farthing.agents.outcome import OUTCOME_EXTENSION, PaymentOutcome

if TYPE_CHECKING:
    from farthing.agents.payer import Payer

__all__ = ["AsyncMeteredBody", "MeteredBody", "is_metered_stream", "watch_stream"]

_EVENT: Final = b"payment-response"  # farthing.inference.streaming.PAYMENT_EVENT
_EVENT_BYTES_MAX: Final = 64 * 1024  # the charge event is a few hundred bytes


def is_metered_stream(response: httpx.Response) -> bool:
    """A 2xx event stream with no ``PAYMENT-RESPONSE``: its charge comes at its end."""
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return (
        response.is_success
        and kind == "text/event-stream"
        and "payment-response" not in response.headers
        and "x-payment-response" not in response.headers
    )


class _Watch:
    """Spots the charge event in a stream's bytes; books the outcome once."""

    def __init__(self, conclude: Callable[[SellerAnswer], PaymentOutcome]) -> None:
        self._conclude = conclude
        self._buffer = bytearray()
        self._name: bytes | None = None
        self._data = bytearray()
        self.settlement: dict[str, Any] | None = None
        self.done = False
        self._skipping = False  # the rest of a line too long to be ours

    def feed(self, chunk: bytes) -> bool:
        """Read ``chunk``; True once the charge event was seen (book it now)."""
        if self.settlement is not None:
            return False
        self._buffer += chunk
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if not line:
                if self._name == _EVENT and self._read(bytes(self._data)):
                    return True
                self._name, self._data = None, bytearray()
            elif line.startswith(b"event:"):
                self._name = line[6:].strip()
            elif line.startswith(b"data:") and self._name == _EVENT:
                self._data += line[5:].removeprefix(b" ")
                if len(self._data) > _EVENT_BYTES_MAX:
                    self._name, self._data = None, bytearray()
        if len(self._buffer) > _EVENT_BYTES_MAX:  # a long line of text: not our event
            self._buffer.clear()
            self._skipping = True
        return False

    def _read(self, data: bytes) -> bool:
        try:
            event = json.loads(data)
        except ValueError:
            return False
        found = event.get("payment_response") if isinstance(event, dict) else None
        if not isinstance(found, dict):
            return False
        self.settlement = found
        return True

    def answer(self) -> SellerAnswer:
        return SellerAnswer(
            delivered=True, refused=False, settlement=self.settlement, challenge=None,
            status="200, streamed" if self.settlement else "200, a stream cut before its charge",
        )  # fmt: skip

    def conclude(self) -> PaymentOutcome | None:
        if self.done:
            return None
        self.done = True
        return self._conclude(self.answer())


class MeteredBody(httpx.SyncByteStream):
    """A streamed answer's body that books its charge as it is read."""

    def __init__(self, inner: httpx.SyncByteStream, watch: _Watch, response: httpx.Response):
        self._inner, self._watch, self._response = inner, watch, response

    def _book(self) -> None:
        outcome = self._watch.conclude()
        if outcome is not None:
            self._response.extensions[OUTCOME_EXTENSION] = outcome

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if self._watch.feed(chunk):
                self._book()
            yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._book()


class AsyncMeteredBody(httpx.AsyncByteStream):
    """:class:`MeteredBody` for asyncio (the books are written in a worker thread)."""

    def __init__(self, inner: httpx.AsyncByteStream, watch: _Watch, response: httpx.Response):
        self._inner, self._watch, self._response = inner, watch, response

    async def _book(self) -> None:
        outcome = await anyio.to_thread.run_sync(self._watch.conclude)
        if outcome is not None:
            self._response.extensions[OUTCOME_EXTENSION] = outcome

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            if self._watch.feed(chunk):
                await self._book()
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            with anyio.CancelScope(shield=True):
                await self._book()


def watch_stream(
    payer: Payer, prepared: Any, response: httpx.Response, *, asynchronous: bool
) -> None:
    """Book ``response``'s charge when its stream shows it, as the caller reads the body."""
    watch = _Watch(lambda answer: payer.conclude(prepared, answer))
    response.extensions[OUTCOME_EXTENSION] = prepared.outcome(
        "possible_spend", "stream_open", message="charged when the stream ends"
    )
    stream = response.stream
    if asynchronous:
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = AsyncMeteredBody(stream, watch, response)
    else:
        assert isinstance(stream, httpx.SyncByteStream)
        response.stream = MeteredBody(stream, watch, response)
