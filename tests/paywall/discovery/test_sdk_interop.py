"""The x402 SDK's bazaar client reads our catalog, and our facilitator catalogs the SDK's declarations.

Payments settle for real on the memory chain through our facilitator's HTTP
app; the SDK's ``with_bazaar`` client (over its sync facilitator client, given
Starlette's ``TestClient`` as its httpx client) lists and searches the
catalog. The declarations come from the SDK's own ``declare_discovery_extension``
and ``declare_mcp_discovery_extension``, enriched with the request's method by
its ``bazaar_resource_server_extension`` as an SDK server does.
"""

from __future__ import annotations

from types import SimpleNamespace

from starlette.testclient import TestClient
from x402.extensions.bazaar import (
    DeclareMcpDiscoveryConfig,
    ListDiscoveryResourcesParams,
    OutputConfig,
    SearchDiscoveryResourcesParams,
    bazaar_resource_server_extension,
    declare_discovery_extension,
    declare_mcp_discovery_extension,
    with_bazaar,
)
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync

from farthing.paywall.discovery import Catalog
from tests.paywall.discovery.conftest import PRICE_ATOMIC, Market, call, facilitator_for


def _sdk_get_declaration() -> dict[str, object]:
    declared = declare_discovery_extension(
        input={"city": "Paris"},
        input_schema={"properties": {"city": {"type": "string"}}, "required": ["city"]},
        output=OutputConfig(example={"temperature": 12}),
    )["bazaar"]
    enriched: dict[str, object] = bazaar_resource_server_extension.enrich_declaration(
        declared, SimpleNamespace(method="GET", route_pattern=None)
    )
    return enriched


def test_an_sdk_declaration_is_cataloged_and_the_sdk_client_reads_it(
    market: Market, catalog: Catalog
) -> None:
    app = facilitator_for(market, catalog)
    body = market.body(
        url="https://sdk.example/weather",
        declaration=_sdk_get_declaration(),
        resource={"serviceName": "SDK Weather", "tags": ["weather"]},
    )
    assert call(app, "POST", "/settle", json=body).json()["success"] is True
    tool = declare_mcp_discovery_extension(
        DeclareMcpDiscoveryConfig(
            tool_name="forecast",
            description="Tomorrow's weather",
            input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            example={"city": "Oslo"},
        )
    )["bazaar"]
    mcp_body = market.body(url="https://sdk.example/mcp", declaration=tool)
    assert call(app, "POST", "/verify", json=mcp_body).json()["isValid"] is True

    http = TestClient(app, base_url="http://facilitator.test")
    client = with_bazaar(
        HTTPFacilitatorClientSync(
            FacilitatorConfig(url="http://facilitator.test", http_client=http)
        )
    )
    listed = client.extensions.bazaar.list_resources(
        ListDiscoveryResourcesParams(type="http", limit=10)
    )
    assert listed.x402_version == 2
    assert listed.pagination.total == 1
    (item,) = listed.items
    assert item.resource == "https://sdk.example/weather"
    assert item.service_name == "SDK Weather"
    assert item.tags == ["weather"]
    assert item.accepts is not None and item.accepts[0]["amount"] == str(PRICE_ATOMIC)
    assert item.extensions is not None
    assert item.extensions["bazaar"]["info"]["input"]["method"] == "GET"

    found = client.extensions.bazaar.search(
        SearchDiscoveryResourcesParams(query="forecast", limit=5)
    )
    assert [r.resource for r in found.resources] == ["https://sdk.example/mcp"]
    assert found.resources[0].type == "mcp"
    assert found.pagination is not None and found.pagination.cursor is None
    http.close()
