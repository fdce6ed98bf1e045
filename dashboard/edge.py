"""The dashboard's edge: which host names it answers, its strict headers, bounded form bodies.

* ``hosts_of(settings)``: the localhost names on a loopback bind, plus the
  host of ``public_url`` and each ``allowed_hosts`` entry; everything else is
  refused (421) by :class:`farthing.web.HostGuard`, which stops DNS rebinding.
  A bind beyond loopback without a public URL is a configuration error.
* ``SecurityHeaders``: pure ASGI, the same strict headers on every response.
* ``read_form``: a POST body is read only up to ``bytes_max`` (the declared
  length is checked first, then the bytes as they arrive), then parsed with a
  bounded number of fields.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farthing.dashboard.errors import DashboardConfigError
from farthing.dashboard.settings import DashboardSettings
from farthing.errors import FarthingError
from farthing.web import allowed_hosts

__all__ = ["CSP", "FORM_BYTES_MAX", "SecurityHeaders", "hosts_of", "read_form"]

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
FORM_BYTES_MAX: Final = 16 * 1024
_FORM_FIELDS_MAX: Final = 20


def hosts_of(settings: DashboardSettings) -> frozenset[str]:
    """The host names this dashboard answers; raises ``DashboardConfigError`` with the fix."""
    try:
        return allowed_hosts(settings.host, [settings.public_url], settings.allowed_hosts)
    except FarthingError as exc:
        raise DashboardConfigError(str(exc)) from None


class SecurityHeaders:
    """Pure ASGI: the same strict headers on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def read_form(request: Request, *, bytes_max: int = FORM_BYTES_MAX) -> dict[str, str] | None:
    """The form's fields (first value of each); ``{}`` when unreadable, None when too large."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > bytes_max):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > bytes_max:
            return None
        chunks.append(chunk)
    try:
        parsed = parse_qs(b"".join(chunks).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=_FORM_FIELDS_MAX)  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        return {}
    return {key: values[0] for key, values in parsed.items()}
