"""The workers' server at its edge: strict headers, bounded bodies, JSON objects, job ids.

Everything here runs before a route touches the service. A body is read only
up to its limit; a JSON body is parsed only after its size and nesting are
bounded (:func:`farthing.web.loads_bounded`), and only a JSON object whose
strings are all Unicode text is handed on (``"\\ud800"`` parses, but SQLite
cannot store it). Every refusal is JSON ``{"error": code, "message": line}``.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farthing.web import JsonBodyError, loads_bounded

__all__ = [
    "JOB_ID_MAX",
    "JSON_DEPTH_MAX",
    "SecurityHeaders",
    "error",
    "is_json",
    "job_id_of",
    "json_object",
    "read_body",
]

# The deepest body the API takes is a sign-in (its resources list): 2 levels.
JSON_DEPTH_MAX: Final = 8
JOB_ID_MAX: Final = 2**62  # past any row id; larger ids are simply unknown


class SecurityHeaders:
    """Pure ASGI: the same strict headers on every response, errors included."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", self.csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def job_id_of(text: str) -> int | None:
    """A path's job id: digits only, at most :data:`_JOB_ID_MAX`; None when malformed."""
    if not (text.isascii() and text.isdigit()) or len(text) > 40:
        return None
    return int(text)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(body: bytes, *, bytes_max: int) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object (an empty body is ``{}``), or the refusal to send."""
    if not body.strip():
        return {}
    try:
        data = loads_bounded(body, depth_max=JSON_DEPTH_MAX, bytes_max=bytes_max)
    except JsonBodyError as exc:
        if exc.reason == "body_too_large":
            return error(413, "body_too_large", str(exc))
        code = "malformed_body" if exc.reason == "invalid_json" else exc.reason
        return error(400, code, str(exc))
    if not isinstance(data, dict):
        return error(400, "malformed_body", "the body is not a JSON object")
    return data


def is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json"
