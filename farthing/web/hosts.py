"""Answer only our own host names (DESIGN.md §13: never trust the Host header).

A server bound to loopback answers the localhost names; a server with a
configured public URL answers that URL's host as well. Any other ``Host`` is
refused with 421 Misdirected Request before the application runs. This is
what stops DNS rebinding: a hostile page whose name was re-pointed at
127.0.0.1 still sends its own name in ``Host``, and is refused.

``HostGuard`` is pure ASGI middleware; lifespan scopes pass through, HTTP and
WebSocket scopes are checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from farthing.errors import FarthingError

__all__ = ["LOOPBACK_NAMES", "HostGuard", "allowed_hosts", "host_of"]

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_HEADER_BYTES_MAX: Final = 1024


def host_of(value: str) -> str | None:
    """The lower-cased host name of a ``Host`` header value, without its port.

    ``None`` for a value that is not a plain host (userinfo, a path, spaces,
    an unclosed IPv6 bracket, an out-of-range port).
    """
    value = value.strip().lower()
    if not value or len(value) > 255 or any(c in value for c in "/@\\ \t?#"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, sep, port = value.partition(":")
        rest = sep + port
        if ":" in port:
            return None
    if rest and (not rest.startswith(":") or not rest[1:].isdigit() or int(rest[1:]) > 65535):
        return None
    # One trailing dot names the same (fully qualified) host; two do not.
    host = host.removesuffix(".")
    return host if host and not host.endswith(".") else None


def _is_loopback(bind_host: str) -> bool:
    if bind_host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(bind_host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(
    bind_host: str, public_urls: Iterable[str | None] = (), extra: Iterable[str] = ()
) -> frozenset[str]:
    """The host names a server bound to ``bind_host`` may answer.

    Loopback binds answer the localhost names. Each public URL adds its host,
    ``extra`` adds names given by the operator (``--allowed-host``). A server
    bound beyond loopback with no name at all has nothing it could safely
    answer: that is a configuration error, raised here with the fix.
    """
    names: set[str] = set()
    if _is_loopback(bind_host):
        names |= LOOPBACK_NAMES
    for url in public_urls:
        if url:
            host = urlsplit(url).hostname
            if not host:
                raise FarthingError(f"the public URL {url!r} has no host name")
            names.add(host.lower())
    for name in extra:
        host = host_of(name)
        if host is None:
            raise FarthingError(f"{name!r} is not a host name")
        names.add(host)
    if not names:
        raise FarthingError(
            f"bound to {bind_host}, this server needs its public URL (--public-url) to know "
            "which host names it answers"
        )
    return frozenset(names)


class HostGuard:
    """Refuse any request whose ``Host`` is not one of ``hosts`` (421)."""

    def __init__(self, app: ASGIApp, *, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)
        if not self.hosts:
            raise FarthingError("HostGuard needs at least one host name")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope.get("headers", ()) if k == b"host"]
        host = None
        if len(values) == 1 and len(values[0]) <= _HEADER_BYTES_MAX:
            host = host_of(values[0].decode("latin-1"))
        if host is not None and host in self.hosts:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b'{"error":"misdirected_request","message":"this server does not answer that host name"}'
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
