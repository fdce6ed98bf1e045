"""What a paid route or tool declares in its 402: the ``bazaar`` extension.

A declaration is ``{"info": …, "schema": …}`` under ``extensions.bazaar``
(specs/extensions/bazaar.md): ``info.input`` says how to call the resource
(an HTTP method with example query parameters or body, or an MCP tool with its
input schema), ``info.output`` an example answer, and ``schema`` is the JSON
Schema (draft 2020-12) that ``info`` satisfies, the shape the x402 SDK's
``declare_discovery_extension`` and ``declare_mcp_discovery_extension`` write.

- :func:`declare_http` builds a route's declaration for one request method;
- :func:`declare_tool` builds a paid MCP tool's (``farthing.paywall.mcp``
  puts it in the tool's PaymentRequired ``extensions``);
- :class:`SiteDiscovery` holds a site's configuration (``[discovery]`` and
  each route's ``[routes.discovery]``) and answers a route's declaration and
  its ``resource`` metadata (``serviceName``, ``tags``, ``iconUrl``).

Every declaration this module builds is checked by the facilitator's own
rules (:func:`farthing.paywall.discovery.validation.check_declaration`) when
it is configured, so a seller's mistake is a start-up error, not an entry a
facilitator silently drops.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from farthing.paywall.discovery.metadata import check_service_metadata
from farthing.paywall.discovery.validation import Refused, check_declaration
from farthing.paywall.errors import PaywallConfigError

__all__ = [
    "BAZAAR",
    "BODY_METHODS",
    "BODY_TYPES",
    "DRAFT_2020_12",
    "OWN_DECLARATION_BYTES_MAX",
    "QUERY_METHODS",
    "RouteDiscovery",
    "ServiceMetadata",
    "SiteDiscovery",
    "declare_http",
    "declare_tool",
]

BAZAAR: Final = "bazaar"
DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"
QUERY_METHODS: Final = ("GET", "HEAD", "DELETE")
BODY_METHODS: Final = ("POST", "PUT", "PATCH")
BODY_TYPES: Final = ("json", "form-data", "text")
MCP_TRANSPORTS: Final = ("streamable-http", "sse")
# Buyers echo a 402's extensions in PAYMENT-SIGNATURE (8 KiB in all, with the
# payment itself and any sign-in declaration): one declaration keeps to half.
OWN_DECLARATION_BYTES_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class RouteDiscovery:
    """What one route declares beyond its method: examples and schemas of its input and output.

    ``input_example`` is the example query parameters (GET, HEAD, DELETE) or
    body (POST, PUT, PATCH); ``input_schema`` the JSON Schema keywords of that
    object (``properties``, ``required``). ``listed_path`` is the concrete path
    ``/.well-known/x402`` points at for a route whose path is a glob.
    """

    input_example: Any = None
    input_schema: Mapping[str, Any] | None = None
    body_type: str = "json"
    output_example: Any = None
    output_schema: Mapping[str, Any] | None = None
    listed_path: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceMetadata:
    """The service a site names on every 402's ``resource``: its name, tags and icon."""

    service_name: str | None = None
    tags: tuple[str, ...] = ()
    icon_url: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.service_name is not None:
            out["serviceName"] = self.service_name
        if self.tags:
            out["tags"] = list(self.tags)
        if self.icon_url is not None:
            out["iconUrl"] = self.icon_url
        return out


def _output(
    example: Any, schema: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    info = {"type": "json", "example": example}
    example_schema: dict[str, Any] = dict(schema or {})
    return info, {
        "type": "object",
        "properties": {"type": {"type": "string"}, "example": example_schema},
        "required": ["type"],
    }


def _envelope(input_schema: dict[str, Any], output_schema: dict[str, Any] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"input": input_schema}
    if output_schema is not None:
        properties["output"] = output_schema
    return {
        "$schema": DRAFT_2020_12,
        "type": "object",
        "properties": properties,
        "required": ["input"],
    }


def declare_http(method: str, route: RouteDiscovery | None = None) -> dict[str, Any] | None:
    """The ``bazaar`` declaration of an HTTP route for ``method``; None for a method it cannot name."""
    method = method.upper()
    route = route or RouteDiscovery()
    properties: dict[str, Any] = {"type": {"type": "string", "const": "http"}}
    info_input: dict[str, Any] = {"type": "http", "method": method}
    if method in QUERY_METHODS:
        properties["method"] = {"type": "string", "enum": list(QUERY_METHODS)}
        required = ["type", "method"]
        if route.input_example is not None:
            info_input["queryParams"] = route.input_example
        properties["queryParams"] = {"type": "object", **dict(route.input_schema or {})}
    elif method in BODY_METHODS:
        properties["method"] = {"type": "string", "enum": list(BODY_METHODS)}
        properties["bodyType"] = {"type": "string", "enum": list(BODY_TYPES)}
        required = ["type", "method", "bodyType", "body"]
        text = route.body_type == "text"
        info_input["bodyType"] = route.body_type
        default_body: Any = "" if text else {}
        info_input["body"] = (
            route.input_example if route.input_example is not None else default_body
        )
        body_schema = {"type": "string"} if text else {"type": "object"}
        properties["body"] = {**body_schema, **dict(route.input_schema or {})}
    else:
        return None
    input_schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    info: dict[str, Any] = {"input": info_input}
    output_schema = None
    if route.output_example is not None:
        info["output"], output_schema = _output(route.output_example, route.output_schema)
    return {"info": info, "schema": _envelope(input_schema, output_schema)}


def declare_tool(
    tool_name: str,
    input_schema: Mapping[str, Any],
    *,
    description: str | None = None,
    example: Mapping[str, Any] | None = None,
    output_example: Any = None,
    output_schema: Mapping[str, Any] | None = None,
    transport: str | None = "streamable-http",
) -> dict[str, Any]:
    """The ``bazaar`` declaration of a paid MCP tool (``input_schema`` is the tool's own).

    Raises ``PaywallConfigError`` for a declaration a facilitator would drop
    (an empty name, an unknown transport, an external ``$ref``, too big).
    """
    if transport is not None and transport not in MCP_TRANSPORTS:
        raise PaywallConfigError(f"transport must be one of {list(MCP_TRANSPORTS)}")
    info_input: dict[str, Any] = {
        "type": "mcp",
        "toolName": tool_name,
        "inputSchema": dict(input_schema),
    }
    properties: dict[str, Any] = {
        "type": {"type": "string", "const": "mcp"},
        "toolName": {"type": "string"},
        "inputSchema": {"type": "object"},
    }
    for key, value, schema in (
        ("description", description, {"type": "string"}),
        ("transport", transport, {"type": "string", "enum": list(MCP_TRANSPORTS)}),
        ("example", None if example is None else dict(example), {"type": "object"}),
    ):
        if value is not None:
            info_input[key] = value
            properties[key] = schema
    input_schema_of_info = {
        "type": "object",
        "properties": properties,
        "required": ["type", "toolName", "inputSchema"],
        "additionalProperties": False,
    }
    info: dict[str, Any] = {"input": info_input}
    out_schema = None
    if output_example is not None:
        info["output"], out_schema = _output(output_example, output_schema)
    declared = {"info": info, "schema": _envelope(input_schema_of_info, out_schema)}
    _check_own(f"tool {tool_name!r}", declared)
    return declared


def _check_own(where: str, declared: dict[str, Any]) -> None:
    checked = check_declaration(declared)
    if isinstance(checked, Refused):
        raise PaywallConfigError(f"{where}: a facilitator would drop this declaration: {checked}")
    size = len(json.dumps(declared, separators=(",", ":")).encode())
    if size > OWN_DECLARATION_BYTES_MAX:
        raise PaywallConfigError(
            f"{where}: the declaration is {size} bytes, more than {OWN_DECLARATION_BYTES_MAX}: "
            "buyers echo it in their payment header (at most 8 KiB), keep the examples short"
        )


@dataclass(frozen=True)
class SiteDiscovery:
    """A site's discovery settings: its service metadata and what each route declares.

    ``routes`` is keyed by the route's path glob, as configured; a route not
    named declares its method alone. ``manifest`` serves ``/.well-known/x402``.
    """

    service: ServiceMetadata = ServiceMetadata()
    routes: Mapping[str, RouteDiscovery] = field(default_factory=dict)
    name: str | None = None
    description: str | None = None
    manifest: bool = True
    _cache: dict[tuple[str, str], dict[str, Any] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        problem = check_service_metadata(
            "[discovery]",
            service_name=self.service.service_name,
            tags=list(self.service.tags) if self.service.tags else None,
            icon_url=self.service.icon_url,
        )
        if problem is not None:
            raise PaywallConfigError(problem)
        for path in self.routes:
            for method in (*QUERY_METHODS[:1], *BODY_METHODS[:1]):
                declared = self.declaration(path, method)
                if declared is not None:
                    _check_own(f"route {path} ({method})", declared)

    def declaration(self, route_path: str, method: str) -> dict[str, Any] | None:
        """The ``bazaar`` declaration of the route at ``route_path`` for ``method``."""
        key = (route_path, method.upper())
        if key not in self._cache:
            self._cache[key] = declare_http(method, self.routes.get(route_path))
        return self._cache[key]

    def resource_metadata(self) -> dict[str, Any]:
        """``serviceName``, ``tags`` and ``iconUrl`` for every 402's ``resource``."""
        return self.service.to_wire()

    def listed_path(self, route_path: str) -> str | None:
        """The concrete path ``/.well-known/x402`` names for a route, or None to leave it out."""
        route = self.routes.get(route_path)
        if route is not None and route.listed_path is not None:
            return route.listed_path
        return None if any(c in route_path for c in "*?") else route_path
