"""Refusing a WebSocket handshake: closed before it is accepted, which the server answers with 403.

The paywall sells HTTP answers; it cannot charge for a stream. So a
WebSocket to a paid path is refused by the middleware (the app never sees
it), and the reverse proxy, which carries HTTP only, refuses every one. An
ASGI app that returns without answering a ``websocket`` scope makes uvicorn
answer 500; ``websocket.close`` before ``websocket.accept`` is the ASGI way to
say no (the server sends ``403 Forbidden``).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["refuse_websocket"]

# RFC 6455 §7.4.1: the endpoint refuses a message that violates its policy.
_POLICY_VIOLATION: Final = 1008


async def refuse_websocket(receive: Any, send: Any) -> None:
    """Take the client's ``websocket.connect`` and close the handshake before accepting it."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return  # the client left first: nothing to answer
    await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": ""})
