"""Read an ASGI request body whole, never past a bound."""

from __future__ import annotations

from typing import Literal

from starlette.types import Receive

__all__ = ["BodyRefusal", "read_body"]

BodyRefusal = Literal["too_large", "disconnected"]


async def read_body(receive: Receive, *, bytes_max: int) -> bytes | BodyRefusal:
    """The whole body; ``"too_large"`` once it passes ``bytes_max`` (nothing more is read),
    ``"disconnected"`` when the client leaves before its end (nobody is left to answer)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return "disconnected"
        body += message.get("body", b"")
        if len(body) > bytes_max:
            return "too_large"
        if not message.get("more_body", False):
            return bytes(body)
