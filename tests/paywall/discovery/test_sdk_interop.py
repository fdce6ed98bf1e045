"""The x402 SDK's bazaar client reads our catalog, and our facilitator catalogs the SDK's declarations.

Payments settle for real on the memory chain through our facilitator's HTTP
app; the SDK's ``with_bazaar`` client (over its sync facilitator client, given
Starlette's ``TestClient`` as its httpx client) lists and searches the
catalog. The declarations come from the SDK's own ``declare_discovery_extension``
and ``declare_mcp_discovery_extension``, enriched with the request's method by
its ``bazaar_resource_server_extension`` as an SDK server does. The SDK's
paying client (``x402HttpxClient``, over uvicorn) echoes our declaration into
its payment header and pays.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from x402 import x402Client
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
from x402.http.clients import x402HttpxClient
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from farthing.paywall import LocalFacilitator, PaidRoute, PaymentStore, PaywallMiddleware
from farthing.paywall.discovery import (
    Catalog,
    RouteDiscovery,
    ServiceMetadata,
    SiteDiscovery,
)
from farthing.paywall.edge.middleware import PaywallOptions
from farthing.paywall.mcp.mount import site_mount
from farthing.paywall.wire import unb64_json
from farthing.web import HostGuard
from tests.paywall.conftest import serve_in_thread
from tests.paywall.discovery.conftest import PRICE_ATOMIC, Market, call, facilitator_for
from tests.paywall.mcp.conftest import mcp_session


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


async def _weather(request: Request) -> PlainTextResponse:
    return PlainTextResponse("12 degrees")


def _declared_site(market: Market, store: PaymentStore, payee: str) -> PaywallMiddleware:
    """A paywall whose one route declares a bazaar extension with a deep schema."""
    discovery = SiteDiscovery(
        service=ServiceMetadata("Weather Co", ("weather",)),
        routes={
            "/weather": RouteDiscovery(
                input_example={"city": "Paris"},
                input_schema={"properties": {"city": {"type": "string"}}, "required": ["city"]},
                output_example={"city": "Paris", "reading": {"temperature": {"celsius": 12}}},
            )
        },
    )
    return PaywallMiddleware(
        Starlette(routes=[Route("/weather", _weather)]),
        options=PaywallOptions(
            routes=[PaidRoute("/weather", "0.01 USDC")],
            facilitator=LocalFacilitator(market.chain, market.relayer),
            store=store,
            pay_to=payee,
            asset=market.asset,
            public_url="https://weather.example",
            discovery=discovery,
        ),
    )


def _sdk_client(market: Market) -> x402Client:
    client = x402Client()
    client.register(market.chain.network, ExactEvmClientScheme(market.payer()))
    client.set_spend_controls(
        {"allowed_assets": [{"network": market.chain.network, "asset": market.asset.address}]}
    )
    return client


def test_the_sdk_client_echoes_our_declaration_and_pays(market: Market, tmp_path: Path) -> None:
    # The SDK's client copies the 402's extensions, JSON schema and all, into
    # PAYMENT-SIGNATURE: our edge must take that header (it nests deep).
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    payee = market.payer(0).address
    app = _declared_site(market, store, payee)
    client = _sdk_client(market)

    async def go(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient() as plain:
            unpaid = await plain.get(f"{url}/weather?city=Oslo")
        async with x402HttpxClient(client, timeout=30.0) as http:
            return unpaid, await http.get(f"{url}/weather?city=Oslo")

    with serve_in_thread(app) as url:
        unpaid, paid = asyncio.run(go(url))
    store.dispose()
    assert "bazaar" in unb64_json(unpaid.headers["payment-required"])["extensions"]
    assert paid.status_code == 200, paid.text
    assert paid.text == "12 degrees"
    assert market.token.balance_of(payee) == 10_000


def test_the_sdk_mcp_client_echoes_our_declaration_and_pays_the_sites_fetch(
    market: Market, tmp_path: Path
) -> None:
    # Over MCP the echo travels in _meta["x402/payment"], under the same bound.
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    payee = market.payer(0).address
    paywall = _declared_site(market, store, payee)

    async def go(url: str) -> Any:
        async with mcp_session(url) as session:
            return await x402MCPSession(session, _sdk_client(market)).call_tool(
                "fetch", {"path": "/weather"}
            )

    with serve_in_thread(HostGuard(site_mount(paywall, paywall), hosts=["127.0.0.1"])) as url:
        result = asyncio.run(go(url))
    store.dispose()
    assert result.is_error is False and result.payment_made is True
    assert "12 degrees" in "".join(c.text for c in result.content)
    assert market.token.balance_of(payee) == 10_000
