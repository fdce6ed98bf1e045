"""Streamed chats through the gateway reuse one connection to vLLM, as plain calls do.

The fake vLLM (``fake_vllm.py``'s app) runs under a real uvicorn on
127.0.0.1, behind a recorder of each request's client address (one address
per TCP connection); the gateway's ``Upstream`` reaches it over real sockets.
A stream the gateway stopped reading at ``data: [DONE]`` used to be closed
with the chunked body's terminator unread, so its connection was dropped and
every streamed call opened a new one (a handshake and vLLM's accept before
the first token). Now the end of the body is read and the connection goes
back to the pool: three streams, one connection.
"""

from __future__ import annotations

from typing import Any

import anyio

from farthing.inference import Gateway
from farthing.inference.upstream import Upstream
from tests.inference.conftest import client_for, fast_settings
from tests.inference.fake_vllm import MODEL, FakeVllm
from tests.paywall.conftest import serve_in_thread


class ClientRecorder:
    """ASGI middleware noting the (host, port) of the connection each chat request came on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.chat_clients: list[tuple[str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.chat_clients.append(tuple(scope["client"]))
        await self.app(scope, receive, send)


def test_streamed_chats_reuse_one_upstream_connection() -> None:
    recorder = ClientRecorder(FakeVllm().app())
    with serve_in_thread(recorder) as url:
        settings = fast_settings(upstream_url=url)
        upstream = Upstream(
            url,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            quick_timeout_s=settings.metrics_timeout_s,
        )
        app = Gateway(settings, upstream=upstream)

        async def three_streams() -> list[bytes]:
            bodies = []
            async with client_for(app) as client:
                for n in range(3):
                    answer = await client.post(
                        "/v1/chat/completions",
                        json={"model": MODEL, "stream": True, "max_tokens": 8,
                              "messages": [{"role": "user", "content": f"a farthing {n}"}]},
                    )  # fmt: skip
                    assert answer.status_code == 200, answer.text
                    bodies.append(answer.content)
            await app.aclose()
            return bodies

        bodies = anyio.run(three_streams)
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
    assert len(recorder.chat_clients) == 3
    assert len(set(recorder.chat_clients)) == 1, recorder.chat_clients
