"""A WebSocket never reaches a paid path of the app unpaid, and the reverse proxy refuses to carry one: both close it before accepting, which a server answers with 403.

The app behind the middleware is a real Starlette app whose WebSocket
handler accepts and sends the paid content; the ASGI ``websocket`` scope is
built as a server hands it over (the decoded ``path`` plus the untouched
``raw_path`` bytes). A paid path, in any spelling that is canonically paid,
is closed and the handler never runs; a free path still reaches the app,
with its canonical path. ``tests/attacks/test_paywall_websocket_upgrade.py``
checks the same through a real ``farthing paywall serve`` process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.site.proxy import ReverseProxy
from tests.paywall.conftest import ChainEnv

SECRET = "PAID-STREAM-51c2"


async def _websocket(app: Any, target: bytes) -> list[dict[str, Any]]:
    """The messages ``app`` sends for one WebSocket handshake to ``target``."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": unquote(target.decode("latin-1")),
        "raw_path": target,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _app(ran: list[str]) -> Starlette:
    async def live(websocket: WebSocket) -> None:
        ran.append(websocket.scope["path"])
        await websocket.accept()
        await websocket.send_text(SECRET)
        await websocket.close()

    return Starlette(routes=[WebSocketRoute("/{rest:path}", live)])


@pytest.mark.anvil
def test_a_websocket_to_a_paid_path_is_closed_and_the_handler_never_runs(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    ran: list[str] = []
    app = PaywallMiddleware(
        _app(ran),
        options=PaywallOptions(
            routes=[PaidRoute("/posts/*", "0.01 USDC"), PaidRoute("/api/*", "0.01 USDC",
                                                                  methods=("POST",))],
            facilitator=chain_env.facilitator(),
            store=PaymentStore.sqlite(tmp_path / "payments.sqlite"),
            pay_to=chain_env.merchant,
            asset=chain_env.asset,
        ),
    )  # fmt: skip

    async def go() -> None:
        for target in (b"/posts/live", b"/free/../posts/live", b"//posts/live/", b"/api/feed",
                       b"/posts%2flive", b"/posts;/live"):  # fmt: skip
            sent = await _websocket(app, target)
            assert [m["type"] for m in sent] == ["websocket.close"], (target, sent)
            assert SECRET not in repr(sent)
        assert ran == []
        # A free path still reaches the app, with its canonical path.
        sent = await _websocket(app, b"/posts/../free//live")
        assert [m["type"] for m in sent][:1] == ["websocket.accept"]
        assert ran == ["/free/live"]

    asyncio.run(go())


def test_the_reverse_proxy_closes_a_websocket_before_accepting_it() -> None:
    proxy = ReverseProxy("http://127.0.0.1:9")  # never reached
    sent = asyncio.run(_websocket(proxy, b"/free/live"))
    assert [m["type"] for m in sent] == ["websocket.close"]
