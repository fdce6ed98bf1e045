"""Any client gets a 500 from ``farthing paywall serve`` by asking to upgrade to a WebSocket, on a paid path or a free one.

A real ``farthing paywall serve --config`` process (exact route
``/api/**``) on a module anvil, in front of a small upstream. A plain
``GET`` with ``Upgrade: websocket`` (the handshake any browser can send)
gets ``500 Internal Server Error`` and the server logs "ASGI callable
returned without completing handshake"; a proxy that does not carry
WebSockets should refuse the upgrade with a 4xx (or answer plain HTTP),
never a server error. No content leaks: the body is uvicorn's own.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.paywall.conftest import ChainEnv, chain_env, inner_app, serve_in_thread
from tests.paywall.test_serve_channels import _config, _private, _serving

pytestmark = pytest.mark.anvil
__all__ = ["chain_env"]

ROUTE = """
[[routes]]
path = "/api/**"
price = "0.01 USDC"
"""


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("path", ["/api/data", "/free"])
def test_a_websocket_upgrade_is_not_a_server_error(
    chain_env: ChainEnv, tmp_path: Path, path: str
) -> None:
    env = chain_env
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[6].private_key.get_secret_value())
    config = _config(
        tmp_path, rpc_url=env.chain.rpc_url or "", token=env.asset.address, pay_to=env.merchant,
        extra=ROUTE,
    )  # fmt: skip
    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
    ):
        port = urlsplit(ready["url"]).port or 0
        answer = _raw(
            port,
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
    status = answer.split(b"\r\n", 1)[0]
    assert b" 5" not in status[:13], status
    assert b"paid-data" not in answer
