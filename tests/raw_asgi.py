"""Send one request to an ASGI app exactly as an HTTP server would hand it over.

HTTP clients normalise what they send (httpx removes dot segments and reads
``//host`` as an authority), so tests of odd paths and methods build the
ASGI scope themselves: the decoded ``path`` plus the untouched ``raw_path``
bytes, and the method in whatever letter case the test chose.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


async def raw_asgi_request(
    app: Any,
    method: str,
    target: bytes,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of ``method target`` sent to ``app``."""
    path_part, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path_part.decode("latin-1")),
        "raw_path": path_part,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], names, content
