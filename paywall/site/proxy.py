"""A reverse proxy as an ASGI app: what ``farthing paywall serve`` puts the paywall in front of.

Requests are forwarded to the upstream with their method, path (the
canonical path the paywall priced, re-encoded), query, body and end-to-end
headers; the answer comes back with its raw (still encoded)
body. The payment headers stay at the paywall: the upstream never sees a
``PAYMENT-SIGNATURE``. An upstream that does not answer is a 502, which the
paywall treats like any non-2xx answer: the payment is released, not settled.

The upstream's ``Server`` and ``Date`` headers stay behind too: the server
running the proxy (uvicorn) writes its own, and a response with two of each
is malformed (RFC 9110 allows one ``Date``); this also keeps the upstream's
software and version private.

WebSockets are not carried: a handshake is closed before it is accepted,
which the server answers with ``403`` (:mod:`farthing.paywall.edge.websocket`).
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from farthing.paywall.edge.paths import encode_path
from farthing.paywall.edge.websocket import refuse_websocket
from farthing.paywall.errors import PaywallConfigError
from farthing.web import read_body

__all__ = ["HOP_BY_HOP", "ReverseProxy"]

# RFC 9110 §7.6.1 connection-specific headers, plus what the proxy rewrites.
HOP_BY_HOP: Final = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
_PRIVATE: Final = frozenset({"payment-signature", "x-payment"})
# Written by the server the proxy runs in; the upstream's copies would double them.
_SERVER_WRITES: Final = frozenset({"server", "date"})


class ReverseProxy:
    """Forward HTTP requests to ``upstream`` (``http(s)://host[:port][/prefix]``)."""

    def __init__(
        self,
        upstream: str,
        *,
        timeout_s: float = 30.0,
        request_body_bytes_max: int = 16 * 1024 * 1024,
        connections_max: int = 100,
    ) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise PaywallConfigError(f"the upstream must be an http(s):// URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.request_body_bytes_max = request_body_bytes_max
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(
                max_connections=connections_max, max_keepalive_connections=connections_max
            ),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            # WebSockets are not proxied: refused (403), never left unanswered (a 500).
            await refuse_websocket(receive, send)
            return
        body = await read_body(receive, bytes_max=self.request_body_bytes_max)
        if isinstance(body, str):  # refused; after a disconnect nobody is left to answer
            if body == "too_large":
                await _plain(send, 413, b'{"error":"request_too_large"}')
            return
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstream + _forwarded_path(scope) + (f"?{query}" if query else "")
        headers = [
            (k, v)
            for k, v in scope.get("headers", [])
            if k.decode("latin-1").lower() not in HOP_BY_HOP | _PRIVATE
        ]
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", str(client[0]).encode()))
        try:
            request = self._client.build_request(
                scope["method"], url, headers=headers, content=bytes(body)
            )
        except httpx.InvalidURL:
            # A path no URL can carry (a tab, a NUL): the client's request, not the upstream.
            await _plain(send, 400, b'{"error":"invalid_path"}')
            return
        try:
            response = await self._client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.HTTPError:
            await _plain(send, 502, b'{"error":"upstream_unavailable"}')
            return
        dropped = HOP_BY_HOP | _SERVER_WRITES
        out = [
            (k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in dropped
        ]
        out.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": raw, "more_body": False})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _forwarded_path(scope: dict[str, Any]) -> str:
    """The path as the upstream gets it: the encoded form the paywall matched, byte for byte.

    Behind ``PaywallMiddleware`` ``raw_path`` is the canonical path encoded
    again, so the upstream serves exactly what was priced; a decoded ``?`` or
    ``#`` can never turn into a query or a fragment on the way.
    """
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)) and raw:
        target = bytes(raw).split(b"?", 1)[0]
        if target.isascii():
            return target.decode("ascii")
    return encode_path(str(scope["path"])).decode("ascii")


async def _plain(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
