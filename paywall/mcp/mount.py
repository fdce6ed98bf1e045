"""``/mcp`` beside the site: MCP over streamable HTTP, its body bounded before it is parsed.

:class:`McpMount` sends ``/mcp`` to an MCP server and everything else to the
site (the paywalled proxy). ``farthing paywall serve`` puts ``HostGuard`` in
front of both, so ``/mcp`` answers only the site's own host names (that is
the DNS-rebinding guard; the ``mcp`` package's own is left off so there is one
list of names). A request body is read up to ``body_bytes_max`` (413 past
it), its JSON nesting measured (400 past ``depth_max``) and it is parsed as
UTF-8 JSON text (400 otherwise: invalid UTF-8 or a lone surrogate escape made
the MCP server answer 500) before the MCP server sees a byte; anything but
``POST`` is 405 (a stateless server that answers in JSON has no stream to
``GET``). Each request gets a stateless session manager of its own:
no session outlives its request, so replicas need not share anything but the
payment database, and no ASGI lifespan is needed.
"""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any, Final, cast

from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from farthing.paywall.edge.asgi import Send, header, send_json
from farthing.paywall.edge.middleware import PaywallMiddleware
from farthing.paywall.mcp.fetch import site_server
from farthing.web import JsonBodyError, loads_bounded, read_body

__all__ = ["MCP_BODY_BYTES_MAX_DEFAULT", "MCP_PATH", "McpMount", "site_mount"]

MCP_PATH: Final = "/mcp"
MCP_BODY_BYTES_MAX_DEFAULT: Final = 64 * 1024
_DEPTH_MAX_DEFAULT: Final = 32


class McpMount:
    """``/mcp`` to ``server``, anything else (and the lifespan) to ``site``."""

    def __init__(
        self,
        site: Any,
        server: Server[Any, Any],
        *,
        body_bytes_max: int = MCP_BODY_BYTES_MAX_DEFAULT,
        depth_max: int = _DEPTH_MAX_DEFAULT,
    ) -> None:
        if not 1024 <= body_bytes_max <= 4 * 1024 * 1024:
            raise ValueError("body_bytes_max must be between 1 KiB and 4 MiB")
        self.site = site
        if not server.version:
            # Without a version of its own, a server reports the mcp package's,
            # read from its installed metadata on every stateless request.
            server.version = package_version("mcp")
        self.server = server
        self.body_bytes_max = body_bytes_max
        self.depth_max = depth_max

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in (MCP_PATH, MCP_PATH + "/"):
            await self._serve(scope, receive, send)
            return
        await self.site(scope, receive, send)

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if str(scope["method"]).upper() != "POST":
            # Stateless and answering in JSON: there is no stream to GET and no
            # session to DELETE, and a GET would hold a connection open for nothing.
            await send_json(
                send,
                405,
                {"error": "method_not_allowed", "message": "MCP here is POST only"},
                [(b"allow", b"POST")],
            )
            return
        declared = header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.body_bytes_max):
            await _too_large(send, self.body_bytes_max)
            return
        body = await read_body(receive, bytes_max=self.body_bytes_max)
        if isinstance(body, str):  # refused; after a disconnect nobody is left to answer
            if body == "too_large":
                await _too_large(send, self.body_bytes_max)
            return
        try:
            loads_bounded(bytes(body), depth_max=self.depth_max, bytes_max=self.body_bytes_max)
        except JsonBodyError as refused:
            await send_json(send, 400, {"error": refused.reason, "message": str(refused)})
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=self.body_bytes_max,
        )
        async with manager.run():
            await manager.handle_request(scope, replay, cast(Any, send))


async def _too_large(send: Send, bytes_max: int) -> None:
    await send_json(
        send, 413, {"error": "body_too_large", "message": f"the body is over {bytes_max} bytes"}
    )


def site_mount(site: Any, paywall: PaywallMiddleware) -> McpMount:
    """The site with ``/mcp`` (the ``fetch`` tool and resources over ``paywall``) beside it."""
    return McpMount(site, site_server(paywall, endpoint=MCP_PATH))
