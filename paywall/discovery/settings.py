"""A site's discovery settings read from its TOML configuration.

::

    [discovery]                              # optional; every paid route declares anyway
    service_name = "Farthing Blog"           # resource.serviceName on every 402
    tags = ["history", "coins"]              # resource.tags (at most 5)
    icon_url = "https://blog.example/icon.png"
    name = "The Farthing Blog"               # the manifest's name and description
    description = "Essays on small coins."
    manifest = true                          # serve /.well-known/x402 (needs public_url)

    [[routes]]
    path = "/api/weather"
    price = "0.01 USDC"
    description = "Weather for a city"
    [routes.discovery]                       # what this route declares in its 402
    input = { city = "Paris" }               # example query parameters (or body, for POST)
    input_schema = { properties = { city = { type = "string" } }, required = ["city"] }
    body_type = "json"                       # POST/PUT/PATCH: json, form-data or text
    output = { temperature = 12 }            # example answer
    output_schema = { type = "object" }
    listed_path = "/api/weather"             # what /.well-known/x402 points at (glob routes)

Every value is checked here and the declarations are built once, so a
mistake, including one a facilitator would drop, is one clear line at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from farthing.paywall.discovery.declaration import (
    BODY_TYPES,
    RouteDiscovery,
    ServiceMetadata,
    SiteDiscovery,
)
from farthing.paywall.errors import PaywallConfigError

__all__ = ["ROUTE_KEYS", "SITE_KEYS", "route_discovery", "site_discovery"]

SITE_KEYS: Final = frozenset(
    {"service_name", "tags", "icon_url", "name", "description", "manifest"}
)
ROUTE_KEYS: Final = frozenset(
    {"input", "input_schema", "body_type", "output", "output_schema", "listed_path"}
)
_TEXT_CHARS_MAX: Final = 512


def _text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _TEXT_CHARS_MAX:
        raise PaywallConfigError(
            f"{where}: {key} must be text of 1 to {_TEXT_CHARS_MAX} characters"
        )
    return value


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PaywallConfigError(f"{where}: {key} must be a table (an object)")
    return value


def route_discovery(data: object, where: str) -> RouteDiscovery:
    """One route's ``[routes.discovery]`` table."""
    where = f"{where}.discovery"
    if not isinstance(data, dict):
        raise PaywallConfigError(f"{where} must be a table")
    unknown = set(data) - ROUTE_KEYS
    if unknown:
        raise PaywallConfigError(f"{where}: unknown keys {sorted(unknown)}")
    body_type = data.get("body_type", "json")
    if body_type not in BODY_TYPES:
        raise PaywallConfigError(f"{where}: body_type must be one of {list(BODY_TYPES)}")
    example = data.get("input")
    if example is not None and not isinstance(example, (dict, str)):
        raise PaywallConfigError(f"{where}: input must be a table of example values (or text)")
    listed = _text(data, "listed_path", where)
    if listed is not None and (not listed.startswith("/") or any(c in listed for c in "*?#")):
        raise PaywallConfigError(f"{where}: listed_path must be a concrete path such as /posts/a")
    return RouteDiscovery(
        input_example=example,
        input_schema=_table(data, "input_schema", where),
        body_type=body_type,
        output_example=data.get("output"),
        output_schema=_table(data, "output_schema", where),
        listed_path=listed,
    )


def site_discovery(
    data: object, routes: Sequence[tuple[str, RouteDiscovery]], where: str
) -> SiteDiscovery:
    """The ``[discovery]`` table (``None``: defaults) with each route's declarations."""
    table: dict[str, Any] = {} if data is None else data  # type: ignore[assignment]
    if not isinstance(table, dict):
        raise PaywallConfigError(f"{where}: discovery must be a table ([discovery])")
    unknown = set(table) - SITE_KEYS
    if unknown:
        raise PaywallConfigError(f"{where}: [discovery] has unknown keys {sorted(unknown)}")
    manifest = table.get("manifest", True)
    if not isinstance(manifest, bool):
        raise PaywallConfigError(f"{where}: discovery.manifest must be true or false")
    tags = table.get("tags")
    if tags is not None and (
        not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
    ):
        raise PaywallConfigError(f"{where}: discovery.tags must be a list of words")
    seen: dict[str, RouteDiscovery] = {}
    for path, route in routes:
        if path in seen and seen[path] != route:
            raise PaywallConfigError(f"{where}: two routes at {path} declare different discovery")
        seen[path] = route
    return SiteDiscovery(
        service=ServiceMetadata(
            service_name=table.get("service_name"),
            tags=tuple(tags or ()),
            icon_url=table.get("icon_url"),
        ),
        routes=seen,
        name=_text(table, "name", "[discovery]"),
        description=_text(table, "description", "[discovery]"),
        manifest=manifest,
    )
