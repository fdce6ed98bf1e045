"""Odd JSON-RPC at ``/mcp`` gets a clean answer, never a 500 or a session to steal: notifications, unknown methods, huge or odd ids, a forged or garbage ``Mcp-Session-Id``, a ``DELETE`` of a session.

Held when tried from outside against ``farthing paywall serve`` with ``mcp =
true``, kept as a test: ``McpMount`` runs a fresh stateless session manager
per request, so no session id is ever issued, a forged one reaches nothing,
and there is no session to end; the ``mcp`` package answers unknown methods
with a JSON-RPC error. Here the real ``McpMount`` in front of a real ``mcp``
low-level server with one tool, over ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.attacks.test_mcp_body_encoding import HEADERS, _mount


def _post(body: bytes, headers: dict[str, str] | None = None, method: str = "POST") -> Any:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_mount())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.request(
                method, "/mcp", headers={**HEADERS, **(headers or {})}, content=body
            )

    return asyncio.run(go())


def _rpc(method: str, id_: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": {}}).encode()


def test_a_notification_is_accepted_with_no_answer() -> None:
    answer = _post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert answer.status_code == 202 and answer.content == b""


@pytest.mark.parametrize("method", ["foo/bar", "resources/list", "prompts/get", "x" * 5000])
def test_an_unknown_method_is_a_json_rpc_error(method: str) -> None:
    answer = _post(_rpc(method))
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] in (-32601, -32602)


@pytest.mark.parametrize("id_", [10**400, "x" * 30_000, -1, 0])
def test_odd_ids_are_echoed(id_: Any) -> None:
    answer = _post(_rpc("tools/list", id_))
    assert answer.status_code == 200
    assert answer.json()["id"] == id_ and answer.json()["result"]["tools"][0]["name"] == "echo"


@pytest.mark.parametrize("session", ["forged-session", "0" * 64, "~!@#$%^&*()"])
def test_no_session_is_issued_and_a_forged_one_reaches_nothing(session: str) -> None:
    answer = _post(_rpc("tools/list"), {"mcp-session-id": session})
    assert answer.status_code == 200
    assert "mcp-session-id" not in answer.headers
    assert _post(b"", {"mcp-session-id": session}, "DELETE").status_code == 405
