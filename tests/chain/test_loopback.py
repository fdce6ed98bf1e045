"""A chain on this machine is reached through ``LoopbackPoster``, which never sends a request twice.

A real ``RpcChain`` against anvil takes web3's POST seam (so a web3 that
renames it fails here, not silently); any other URL keeps ``requests``. A
fake node that closes its connection after every answer (saying so, as
HTTP/1.1 asks) is reached again on a fresh connection, each request arriving
exactly once; a node that answers HTTP 500 or junk is an outage naming the URL.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from farthing.wallet.chain import Chain, RpcChain
from farthing.wallet.chain.loopback import LoopbackPoster, is_loopback_http
from farthing.wallet.errors import ChainUnavailableError


def test_which_urls_are_loopback() -> None:
    assert is_loopback_http("http://127.0.0.1:8545")
    assert is_loopback_http("http://localhost:8545/rpc")
    assert is_loopback_http("http://[::1]:8545")
    assert not is_loopback_http("https://127.0.0.1:8545")
    assert not is_loopback_http("http://10.0.0.5:8545")
    assert not is_loopback_http("http://127.0.0.1.example.com:8545")
    with pytest.raises(ValueError, match="not plain HTTP"):
        LoopbackPoster("https://mainnet.base.org", timeout_s=1.0)


@pytest.mark.anvil
def test_a_local_node_is_reached_through_the_loopback_poster(anvil_chain: Chain) -> None:
    chain = RpcChain(anvil_chain.rpc_url or "")
    provider: Any = chain.w3.provider
    assert isinstance(provider._request_session_manager, LoopbackPoster)
    assert chain.block_number() >= 0
    chain.close()


class FakeClosingNode:
    """Answers ``eth_chainId`` and ``eth_blockNumber``, closing the connection after each answer."""

    def __init__(
        self, status: int = 200, body: bytes | None = None, *, idle_s: float | None = None
    ) -> None:
        node = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_s  # keep-alive, closed after this long idle

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                asked = json.loads(self.rfile.read(int(self.headers["content-length"])))
                node.requests += 1
                result = "0x7a69" if asked["method"] == "eth_chainId" else hex(node.requests)
                data = (
                    body
                    or json.dumps({"jsonrpc": "2.0", "id": asked["id"], "result": result}).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if idle_s is None:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def closing_node() -> Iterator[FakeClosingNode]:
    node = FakeClosingNode()
    yield node
    node.close()


def test_a_node_that_closes_idle_connections_gets_each_request_once(
    closing_node: FakeClosingNode,
) -> None:
    chain = RpcChain(closing_node.url, timeout_s=2.0)
    seen = closing_node.requests  # eth_chainId at start
    numbers = [chain.block_number() for _ in range(5)]
    assert closing_node.requests == seen + 5
    assert numbers == sorted(numbers) and len(set(numbers)) == 5
    chain.close()


def test_a_connection_the_node_closed_while_idle_is_not_reused() -> None:
    node = FakeClosingNode(idle_s=0.2)
    try:
        chain = RpcChain(node.url, timeout_s=2.0)
        first = chain.block_number()
        seen = node.requests
        time.sleep(0.6)  # the node drops the idle connection meanwhile
        assert chain.block_number() == first + 1
        assert node.requests == seen + 1  # the read arrived once, on a new connection
        chain.close()
    finally:
        node.close()


@pytest.mark.parametrize(("status", "body", "said"), [(500, b"oops", "HTTP 500"),
                                                      (200, b"<html>", "not JSON")])  # fmt: skip
def test_a_node_that_fails_is_an_outage_naming_the_url(status: int, body: bytes, said: str) -> None:
    node = FakeClosingNode(status, body)
    try:
        with pytest.raises(ChainUnavailableError, match=said) as raised:
            RpcChain(node.url, timeout_s=2.0)
        assert node.url in str(raised.value)
    finally:
        node.close()
