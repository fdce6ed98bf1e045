"""Discovery: the ``bazaar`` extension a 402 declares, ``/.well-known/x402``,
and the facilitator's catalog of what it has seen settled or verified.

- ``declaration``: what a route or an MCP tool declares (``declare_http``,
  ``declare_tool``) and a site's discovery settings (``SiteDiscovery``);
- ``metadata``: the soft-drop rules for ``serviceName``, ``tags`` and ``iconUrl``;
- ``validation``: an untrusted declaration checked, bounded, never fetching;
- ``manifest``: the site's ``/.well-known/x402`` (``WellKnown``);
- ``catalog``: the facilitator's catalog in its database; ``ingest``: a
  payment's declaration into it; ``listing``: ``/discovery/resources`` and
  ``/discovery/search``.
"""

from farthing.paywall.discovery.catalog import Catalog, CatalogPage, Offer, Search
from farthing.paywall.discovery.declaration import (
    BAZAAR,
    RouteDiscovery,
    ServiceMetadata,
    SiteDiscovery,
    declare_http,
    declare_tool,
)
from farthing.paywall.discovery.ingest import catalog_payment, offer_from
from farthing.paywall.discovery.listing import catalog_routes
from farthing.paywall.discovery.manifest import MANIFEST_PATH, Pointer, WellKnown, manifest_document
from farthing.paywall.discovery.metadata import clean_service_metadata
from farthing.paywall.discovery.validation import Checked, Refused, check_declaration

__all__ = [
    "BAZAAR",
    "MANIFEST_PATH",
    "Catalog",
    "CatalogPage",
    "Checked",
    "Offer",
    "Pointer",
    "Refused",
    "RouteDiscovery",
    "Search",
    "ServiceMetadata",
    "SiteDiscovery",
    "WellKnown",
    "catalog_payment",
    "catalog_routes",
    "check_declaration",
    "clean_service_metadata",
    "declare_http",
    "declare_tool",
    "manifest_document",
    "offer_from",
]
