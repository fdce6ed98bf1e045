"""``FaultProxy``: a real JSON-RPC relay on 127.0.0.1 in front of anvil, with faults switched at run time.

The node's HTTP endpoint is a seam we do not own, so this is where faults are
injected: the code under test talks real HTTP to a real port, and the proxy
either relays each request to anvil untouched or, for the methods a test
names, does one of these:

* ``refuse()``: stop listening, so connections are refused (``restore()``
  listens again on the same port);
* ``delay(method, seconds)``: hold the request past the client's timeout,
  then relay it anyway (a slow node still executes what it was sent);
* ``error(method, code, message)``: answer a JSON-RPC error object instead,
  without relaying (``relay=True`` relays first and loses the answer: the
  node did the work, the client only hears an error);
* ``clear()``: drop every fault and wake any request held by a delay.

A fault applies to every matching request until cleared, or to the next
``times`` of them. ``calls`` counts the requests seen per method.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FaultProxy", "port_is_refused"]

_UPSTREAM_TIMEOUT_S = 30.0


@dataclass
class _Fault:
    methods: frozenset[str] | None  # None: every method
    kind: str  # "delay" | "error"
    seconds: float = 0.0
    code: int = 0
    message: str = ""
    relay: bool = False
    times: int | None = None  # None: until cleared

    def matches(self, method: str) -> bool:
        return self.methods is None or method in self.methods


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy:
    """Relays JSON-RPC to ``upstream`` on a port chosen by the OS, with switchable faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ switches

    def delay(self, method: str | None, seconds: float, *, times: int | None = None) -> None:
        self._add(_Fault(_methods(method), "delay", seconds=seconds, times=times))

    def error(
        self,
        method: str | None,
        code: int,
        message: str,
        *,
        relay: bool = False,
        times: int | None = None,
    ) -> None:
        self._add(
            _Fault(_methods(method), "error", code=code, message=message, relay=relay, times=times)
        )

    def refuse(self) -> None:
        """Stop listening: every connection is refused until :meth:`restore`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restore(self) -> None:
        if self._server is None:
            self._listen(self.port)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self._wake.set()  # release requests held by a delay
        self.restore()

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until no request is being handled (a held one has been relayed)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s):
                raise TimeoutError("the proxy is still handling a request")

    def close(self) -> None:
        self._wake.set()
        self.refuse()

    # ------------------------------------------------------------ internals

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._wake.clear()
            self._faults.append(fault)

    def _take(self, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _listen(self, port: int = 0) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so refuse() leaves no
            # kept-alive connection through which requests still get answers.
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with proxy._idle:
                    proxy._in_flight += 1
                try:
                    self._handle()
                finally:
                    with proxy._idle:
                        proxy._in_flight -= 1
                        proxy._idle.notify_all()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    request = json.loads(body)
                except ValueError:
                    request = {}
                if isinstance(request, list):
                    self._handle_batch(body, request)
                    return
                method = request.get("method", "") if isinstance(request, dict) else ""
                proxy.calls[method] += 1
                fault = proxy._take(method)
                if fault is not None and fault.kind == "delay":
                    proxy._wake.wait(fault.seconds)
                if fault is not None and fault.kind == "error":
                    if fault.relay:
                        proxy._relay(body)
                    answer = {
                        "jsonrpc": "2.0",
                        "id": request.get("id") if isinstance(request, dict) else None,
                        "error": {"code": fault.code, "message": fault.message},
                    }
                    self._answer(json.dumps(answer).encode())
                    return
                try:
                    data = proxy._relay(body)
                except OSError:
                    self.close_connection = True
                    return
                self._answer(data)

            def _handle_batch(self, body: bytes, batch: list[Any]) -> None:
                """A JSON-RPC batch: each member meets its method's faults, as if sent alone."""
                faults = []
                for member in batch:
                    method = member.get("method", "") if isinstance(member, dict) else ""
                    proxy.calls[method] += 1
                    faults.append(proxy._take(method))
                delays = [f.seconds for f in faults if f is not None and f.kind == "delay"]
                if delays:
                    proxy._wake.wait(max(delays))
                try:
                    answers = json.loads(proxy._relay(body))
                except OSError:
                    self.close_connection = True
                    return
                by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
                for member, fault in zip(batch, faults, strict=True):
                    if fault is not None and fault.kind == "error" and isinstance(member, dict):
                        by_id[member.get("id")] = {
                            "jsonrpc": "2.0",
                            "id": member.get("id"),
                            "error": {"code": fault.code, "message": fault.message},
                        }
                self._answer(json.dumps(list(by_id.values())).encode())

            def _answer(self, data: bytes) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting: that was the point of the delay

        server = _Server(("127.0.0.1", port), Handler)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _relay(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=_UPSTREAM_TIMEOUT_S) as answer:
            data: bytes = answer.read()
        return data


def _methods(method: str | None) -> frozenset[str] | None:
    return None if method is None else frozenset({method})


def port_is_refused(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
