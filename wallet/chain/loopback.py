"""JSON-RPC to a node on this machine: ``http.client`` with one keep-alive connection per thread.

A facilitator beside its own node (anvil, or a node run next to it) makes a
few JSON-RPC calls per payment, and with ``requests`` under web3 each call
spent more CPU in the HTTP client (sessions, adapters, hooks, the connection
pool) than the node spent answering. For a plain ``http://`` URL whose host
is this machine (``127.0.0.1``, ``::1``, ``localhost``), :class:`LoopbackPoster`
takes web3's place for the POST itself: no proxy, no TLS, no redirects apply
to such a URL, so nothing ``requests`` would have done is lost. Any other URL
keeps ``requests``.

Failures are raised as ``requests`` raises them (``Timeout``,
``ConnectionError``, ``HTTPError`` with the status), so the chain client's
outage handling reads them the same. A request is never sent twice: a
connection the node closed while idle is noticed before it is reused (it
reads as closed), and a failure mid-request drops the connection and raises.
"""

from __future__ import annotations

import http.client
import select
import threading
import weakref
from typing import Any, Final
from urllib.parse import urlsplit

import requests

__all__ = ["LoopbackPoster", "is_loopback_http"]

_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_RESPONSE_BYTES_MAX: Final = 64 * 1024 * 1024


def is_loopback_http(url: str) -> bool:
    """Whether ``url`` is plain HTTP to this machine."""
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS


class LoopbackPoster:
    """POSTs JSON-RPC bodies to one loopback URL; the ``make_post_request`` web3 calls."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        if not is_loopback_http(url):
            raise ValueError(f"{url} is not plain HTTP to this machine")
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        # Each thread's connection, by thread id: closed when that thread is
        # gone (noticed as another opens one) or when the chain is closed.
        self._connections: dict[int, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()
        # A chain dropped without close() still closes its sockets.
        self._finalizer = weakref.finalize(self, _close_all, self._connections)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            _close_all(self._connections)

    def make_post_request(self, endpoint_uri: Any, data: bytes | Any, **kwargs: Any) -> bytes:
        timeout = kwargs.get("timeout", self.timeout_s)
        timeout_s = float(max(timeout) if isinstance(timeout, tuple) else timeout)
        body = data if isinstance(data, bytes) else str(data).encode()
        connection = self._connection(timeout_s)
        try:
            connection.request(
                "POST",
                self.path,
                body=body,
                headers={"Content-Type": "application/json", "Connection": "keep-alive"},
            )
            response = connection.getresponse()
            answer = response.read(_RESPONSE_BYTES_MAX + 1)
        except TimeoutError:
            self._drop()
            raise requests.Timeout(f"{endpoint_uri} timed out") from None
        except (OSError, http.client.HTTPException):
            self._drop()
            raise requests.ConnectionError(f"{endpoint_uri} did not answer") from None
        if len(answer) > _RESPONSE_BYTES_MAX:
            self._drop()
            raise requests.ConnectionError(f"{endpoint_uri} answered more than we read")
        if response.will_close:
            self._drop()
        if response.status >= 400:
            failed = requests.Response()
            failed.status_code = response.status
            raise requests.HTTPError(f"HTTP {response.status}", response=failed)
        return answer

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        with self._lock:
            connection = self._connections.get(threading.get_ident())
        if connection is not None and _closed_by_peer(connection):
            self._drop()
            connection = None
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
            self._adopt(connection)
        elif connection.sock is not None:
            connection.sock.settimeout(timeout_s)
        connection.timeout = timeout_s
        return connection

    def _adopt(self, connection: http.client.HTTPConnection) -> None:
        alive = {thread.ident for thread in threading.enumerate()}
        with self._lock:
            orphans = [k for k in self._connections if k not in alive]
            gone = [self._connections.pop(k) for k in orphans]
            self._connections[threading.get_ident()] = connection
        for orphan in gone:
            orphan.close()

    def _drop(self) -> None:
        with self._lock:
            connection = self._connections.pop(threading.get_ident(), None)
        if connection is not None:
            connection.close()


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection was closed by the node (or holds junk)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    # Nothing is owed on an idle connection: readable means closed, or junk.
    return bool(readable)


def _close_all(connections: dict[int, http.client.HTTPConnection]) -> None:
    for connection in list(connections.values()):
        connection.close()
    connections.clear()
