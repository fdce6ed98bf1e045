"""The edge's ASGI plumbing: headers read from a scope, answers buffered and sent.

A paid handler runs with its answer **buffered** (:func:`run_buffered`):
nothing of it reaches the client until the payment settles. Everything the
middleware sends itself goes out through :func:`send_json` (and
:func:`send_unavailable` for a 503 with ``Retry-After``) or
:func:`send_buffered`, which marks a paid answer private and exposes the
x402 headers to browsers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio.to_thread

from farthing.paywall.schemes.batch_settlement.server import CHARGE_HEADER
from farthing.paywall.wire import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER

__all__ = [
    "EXPOSE",
    "BodyTooLarge",
    "Buffered",
    "Send",
    "cookie",
    "header",
    "header_of",
    "in_thread",
    "private_answer",
    "run_buffered",
    "send_buffered",
    "send_json",
    "send_unavailable",
    "without_body",
]

EXPOSE: Final = f"{PAYMENT_REQUIRED_HEADER}, {PAYMENT_RESPONSE_HEADER}"
# Scope extensions that would let a handler write around the buffer.
_UNBUFFERED_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopy")

Send = Callable[[dict[str, Any]], Any]


@dataclass(slots=True)
class Buffered:
    """An app's answer, kept here: nothing of it has reached the client."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    charge: str | None = None  # the handler's Farthing-Charge header, stripped


class BodyTooLarge(Exception):
    """The app's answer grew past the middleware's ``response_body_bytes_max``."""


async def run_buffered(
    app: Any, scope: Mapping[str, Any], receive: Any, *, body_bytes_max: int
) -> Buffered:
    """Run the app with every byte of its answer kept here, none sent."""
    buffered = Buffered()
    inner = dict(scope)
    inner["extensions"] = {
        k: v for k, v in (scope.get("extensions") or {}).items() if k not in _UNBUFFERED_EXTENSIONS
    }

    async def capture(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            buffered.status = int(message["status"])
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            # The handler's own charge (dynamic price) is for us, never the client.
            charge = CHARGE_HEADER.encode()
            buffered.charge = header_of(headers, charge)
            buffered.headers = [(k, v) for k, v in headers if k.lower() != charge]
        elif kind == "http.response.body":
            buffered.body += message.get("body", b"")
            if len(buffered.body) > body_bytes_max:
                raise BodyTooLarge()

    await app(inner, receive, capture)
    if buffered.status == 0:
        raise RuntimeError("the app finished without starting a response")
    return buffered


async def in_thread(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking call (the payment database) off the event loop."""
    return await anyio.to_thread.run_sync(lambda: method(*args, **kwargs))


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """A request header's value (the first), ``name`` in lower case."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def header_of(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A header's value (the first) in an answer's header list, ``name`` in lower case."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def cookie(scope: Mapping[str, Any], name: str) -> str | None:
    """A request cookie's value, else None."""
    for key, value in scope.get("headers", []):
        if key.lower() != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            key_text, sep, found = part.strip().partition("=")
            if sep and key_text == name:
                return found
    return None


def private_answer(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` for an article served to its owner: never from a shared cache."""

    async def private(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
            ]
            headers += [(b"cache-control", b"private, no-store"), (b"vary", b"cookie"), *extra]
            message = {**message, "headers": headers}
        await send(message)

    return private


def without_body(send: Send) -> Send:
    """``send`` for a HEAD answer: the status and headers go out, the body does not."""

    async def head_only(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_only


async def send_buffered(send: Send, buffered: Buffered, extra: list[tuple[bytes, bytes]]) -> None:
    """Send a buffered answer; with ``extra`` (a paid answer's headers), kept private."""
    headers = list(buffered.headers)
    if extra:
        cache = header_of(headers, b"cache-control")
        headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
        # Paid content must never be served from a shared cache to someone else.
        headers.append(
            (b"cache-control", b"private" if not cache else f"private, {cache}".encode())
        )
        headers.append((b"access-control-expose-headers", EXPOSE.encode()))
        headers.extend(extra)
    await send({"type": "http.response.start", "status": buffered.status, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(buffered.body), "more_body": False})


async def send_json(
    send: Send, status: int, body: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A compact JSON answer that no cache keeps."""
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        (b"access-control-expose-headers", EXPOSE.encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def send_unavailable(
    send: Send, reason: str, message: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """503 with a reason and ``Retry-After: 5``."""
    await send_json(
        send, 503, {"error": reason, "message": message}, [(b"retry-after", b"5"), *extra]
    )
