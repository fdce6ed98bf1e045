"""``/.well-known/x402``: the site's discovery manifest (specs/extensions/discovery.md).

The manifest says the host is an x402 ``resource-server`` and lists its paid
resources as bare pointers (``url``, ``method``, ``description``): an indexer
dereferences each one and takes its 402, with the ``bazaar`` declaration, as
the authority. No price, asset or payee is published here: those rot, and the
402 does not.

Every URL is the configured public URL plus a route's path, built once when
the site starts: never from the ``Host`` or ``X-Forwarded-Host`` header
(DESIGN.md §13), so a forged header cannot make the document name another
host. A site without a public URL has no manifest (404 with a reason). A
route whose path is a glob is listed only when its configuration names a
concrete ``listed_path``.

:class:`WellKnown` is pure ASGI in front of the site: ``GET`` and ``HEAD`` of
exactly ``/.well-known/x402`` are answered from the prebuilt bytes, any other
method there is a 405, and everything else passes through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MANIFEST_PATH", "Pointer", "WellKnown", "manifest_document"]

MANIFEST_PATH: Final = "/.well-known/x402"
_DESCRIPTION_CHARS_MAX: Final = 512


@dataclass(frozen=True, slots=True)
class Pointer:
    """One paid resource: its path on the site, a method it is sold for, and what it is."""

    path: str
    method: str
    description: str = ""


def manifest_document(
    public_url: str,
    pointers: Sequence[Pointer],
    *,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The manifest of a resource server at ``public_url`` (configuration, never a header)."""
    base = public_url.rstrip("/")
    resources = []
    for pointer in pointers:
        entry = {"url": base + pointer.path, "method": pointer.method}
        if pointer.description:
            entry["description"] = pointer.description[:_DESCRIPTION_CHARS_MAX]
        resources.append(entry)
    document: dict[str, Any] = {"x402Version": 2, "kind": "resource-server"}
    if name:
        document["name"] = name
    if description:
        document["description"] = description
    document["resources"] = resources
    return document


class WellKnown:
    """Answer ``/.well-known/x402`` from ``document`` (None: no public URL, a 404)."""

    def __init__(self, app: Any, *, document: dict[str, Any] | None) -> None:
        self.app = app
        if document is None:
            self.body = json.dumps(
                {"error": "no_manifest", "message": "this site has no public_url configured"}
            ).encode()
            self.status = 404
        else:
            self.body = json.dumps(document, separators=(",", ":")).encode()
            self.status = 200

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != MANIFEST_PATH:
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "")).upper()
        headers = [
            (b"content-type", b"application/json"),
            (b"access-control-allow-origin", b"*"),
            (b"cache-control", b"public, max-age=300"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if method not in ("GET", "HEAD"):
            body = b'{"error":"method_not_allowed"}'
            headers = [*headers, (b"allow", b"GET, HEAD")]
            await self._send(send, 405, headers, body, head=False)
            return
        await self._send(send, self.status, headers, self.body, head=method == "HEAD")

    @staticmethod
    async def _send(
        send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, head: bool
    ) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
