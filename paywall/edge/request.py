"""The canonical request: what routes match is exactly what the app receives.

:func:`canonical_request` makes every HTTP request's path canonical
(``farthing.paywall.edge.paths``: dot segments removed, empty segments
dropped, encoded dot, slash and backslash refused) and upper-cases its
method. On a paid path, a method no route charges for never reaches the
content (:func:`serve_unpriced`): ``HEAD`` gets the challenge without a
body, ``OPTIONS`` only the app's status and preflight headers, anything else
405. A paid path's WebSocket is closed before the app runs
(:func:`serve_websocket`); the paywall page's own assets are served here
(:func:`send_asset`).
"""

from __future__ import annotations

from typing import Any

from farthing.paywall.edge.asgi import (
    BodyTooLarge,
    Buffered,
    Send,
    run_buffered,
    send_json,
    without_body,
)
from farthing.paywall.edge.challenge import Challenger
from farthing.paywall.edge.page import asset
from farthing.paywall.edge.paths import PathRefusal, canonical_path, encode_path
from farthing.paywall.edge.routes import RouteTable
from farthing.paywall.edge.websocket import refuse_websocket

__all__ = ["canonical_request", "send_asset", "serve_unpriced", "serve_websocket"]


def canonical_request(scope: dict[str, Any]) -> dict[str, Any] | PathRefusal:
    """The HTTP scope with its one canonical path (and raw path) and upper-case method."""
    path = canonical_path(scope)
    if isinstance(path, PathRefusal):
        return path
    method = str(scope["method"]).upper()
    return {**scope, "path": path, "raw_path": encode_path(path), "method": method}


async def serve_websocket(
    app: Any, routes: RouteTable, scope: dict[str, Any], receive: Any, send: Send
) -> None:
    """A stream cannot be paid for: a paid path's WebSocket is closed, the app never runs.

    A free path's reaches the app, with the canonical path like any request.
    """
    path = canonical_path(scope)
    if isinstance(path, PathRefusal) or routes.methods_at(path):
        await refuse_websocket(receive, send)
        return
    await app({**scope, "path": path, "raw_path": encode_path(path)}, receive, send)


async def serve_unpriced(
    app: Any,
    scope: dict[str, Any],
    receive: Any,
    send: Send,
    *,
    routes: RouteTable,
    challenger: Challenger,
    body_bytes_max: int,
) -> None:
    """A method no route charges for: free paths pass; a paid path never leaks content.

    ``HEAD`` on a path sold by ``GET`` gets the ``GET`` challenge without a
    body (it can learn the price, never pay or read); ``OPTIONS`` reaches
    the app (CORS preflights) but only its status and its ``Allow``,
    ``Vary`` and ``Access-Control-*`` headers come back;
    any other method is refused with 405 before the app sees it.
    """
    path = scope["path"]
    charged = routes.methods_at(path)
    if not charged:
        await app(scope, receive, send)
        return
    method = scope["method"]
    allowed = sorted(charged | ({"HEAD"} if "GET" in charged else set()) | {"OPTIONS"})
    if method == "HEAD" and "GET" in charged:
        as_get = {**scope, "method": "GET"}
        route = routes.match("GET", path)
        if route is not None:  # pragma: no branch - "GET" in charged
            priced = await challenger.price(as_get, route)
            await challenger.send_402(without_body(send), priced, None, "Payment required.")
            return
    if method == "OPTIONS":
        try:
            buffered = await run_buffered(app, scope, receive, body_bytes_max=body_bytes_max)
        except BodyTooLarge:
            buffered = Buffered(status=204)
        # Only what a preflight needs goes back: a careless upstream that
        # answers OPTIONS like GET must not leak the page in a header.
        headers = [(k, v) for k, v in buffered.headers if _preflight_header(k)]
        headers.append((b"content-length", b"0"))
        start = {"type": "http.response.start", "status": buffered.status, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send_json(
        send,
        405,
        {
            "error": "method_not_allowed",
            "message": f"{method} is not sold here; this path is paid with "
            f"{', '.join(sorted(charged))}.",
        },
        [(b"allow", ", ".join(allowed).encode())],
    )


async def send_asset(send: Send, path: str, *, head: bool) -> None:
    """One of the paywall page's own files (``ASSET_PATHS``), cached publicly."""
    found = asset(path)
    if found is None:  # pragma: no cover - only called for ASSET_PATHS
        await send_json(send, 404, {"error": "not_found"})
        return
    data, media_type = found
    headers = [
        (b"content-type", media_type),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"public, max-age=3600"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else data, "more_body": False})


def _preflight_header(name: bytes) -> bool:
    """Whether an app's answer to ``OPTIONS`` on a paid path may carry this header on."""
    lowered = name.lower()
    return lowered in (b"allow", b"vary", b"date") or lowered.startswith(b"access-control-")
