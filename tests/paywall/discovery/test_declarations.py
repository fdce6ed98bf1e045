"""Every paid route's 402 declares the bazaar extension and the service metadata, as the SDK reads them.

A real ``PaywallMiddleware`` over a small Starlette app, driven through
``httpx.ASGITransport`` on the memory chain, answers the 402s; the x402 SDK's
own bazaar code (``validate_discovery_extension``, ``extract_discovery_info``)
reads what we declare. The site's TOML configuration is parsed from files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from x402.extensions.bazaar import extract_discovery_info, validate_discovery_extension

from farthing.paywall import (
    LocalFacilitator,
    PaidRoute,
    PaymentStore,
    PaywallMiddleware,
    RemoteFacilitator,
)
from farthing.paywall.discovery import (
    Catalog,
    RouteDiscovery,
    ServiceMetadata,
    SiteDiscovery,
    check_declaration,
    declare_http,
    declare_tool,
)
from farthing.paywall.edge.middleware import PaywallOptions
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.site.config import load_config
from farthing.paywall.wire import unb64_json
from tests.paywall.conftest import run, sign_for
from tests.paywall.discovery.conftest import Market, call, facilitator_for

WEATHER = RouteDiscovery(
    input_example={"city": "Paris"},
    input_schema={"properties": {"city": {"type": "string"}}, "required": ["city"]},
    output_example={"city": "Paris", "temperature": 12},
)
SITE = SiteDiscovery(
    service=ServiceMetadata("Weather Co", ("weather", "maps"), "https://cdn.example/w.png"),
    routes={"/api/weather": WEATHER},
)


async def _weather(request: Request) -> JSONResponse:
    return JSONResponse({"city": "Paris", "temperature": 12})


def _paywall(
    market: Market,
    store: PaymentStore,
    discovery: SiteDiscovery | None,
    facilitator: Any = None,
    pay_to: str | None = None,
) -> Any:
    inner = Starlette(routes=[Route("/api/{name}", _weather, methods=["GET", "POST"])])
    routes = [
        PaidRoute("/api/weather", "0.01 USDC", description="Weather for a city"),
        PaidRoute("/api/search", "0.02 USDC", methods=("POST",), description="Search"),
    ]
    options = PaywallOptions(
        routes=routes,
        facilitator=facilitator or LocalFacilitator(market.chain, market.relayer),
        store=store,
        pay_to=pay_to or market.payer(0).address,
        asset=market.asset,
        public_url="https://weather.example",
        discovery=discovery,
    )
    return PaywallMiddleware(inner, options=options)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    payments = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    yield payments
    payments.dispose()


def test_the_402_declares_bazaar_and_names_the_service(market: Market, store: PaymentStore) -> None:
    response = call(_paywall(market, store, SITE), "GET", "/api/weather?city=Oslo")
    assert response.status_code == 402
    header = unb64_json(response.headers["payment-required"])
    declared = header["extensions"]["bazaar"]
    assert declared == declare_http("GET", WEATHER)
    assert declared["info"]["input"] == {
        "type": "http",
        "method": "GET",
        "queryParams": {"city": "Paris"},
    }
    assert header["resource"]["serviceName"] == "Weather Co"
    assert header["resource"]["tags"] == ["weather", "maps"]
    assert header["resource"]["iconUrl"] == "https://cdn.example/w.png"
    assert response.json()["extensions"] == header["extensions"]
    assert validate_discovery_extension(declared).valid
    # What the SDK's facilitator would catalog from a buyer echoing this 402:
    payload = {"x402Version": 2, "resource": header["resource"], "extensions": header["extensions"]}
    found = extract_discovery_info(payload, header["accepts"][0])
    assert found is not None
    assert (found.resource_url, found.method, found.service_name) == (
        "https://weather.example/api/weather",
        "GET",
        "Weather Co",
    )


def test_a_body_route_declares_its_body_and_an_undeclared_route_its_method(
    market: Market, store: PaymentStore
) -> None:
    response = call(_paywall(market, store, SITE), "POST", "/api/search", json={"q": "x"})
    declared = unb64_json(response.headers["payment-required"])["extensions"]["bazaar"]
    assert declared["info"]["input"] == {
        "type": "http",
        "method": "POST",
        "bodyType": "json",
        "body": {},
    }
    assert validate_discovery_extension(declared).valid
    assert check_declaration(declared).kind == "http"  # type: ignore[union-attr]


def test_a_sale_through_our_facilitator_is_cataloged_from_the_sellers_own_402(
    market: Market, store: PaymentStore, catalog: Catalog
) -> None:
    transport = httpx.ASGITransport(app=facilitator_for(market, catalog))
    facilitator = RemoteFacilitator("http://facilitator.test", transport=transport)
    pay_to = market.payer(0).address
    paywall = _paywall(market, store, SITE, facilitator=facilitator, pay_to=pay_to)
    payer = market.payer()

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=paywall)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            unpaid = await client.get("/api/weather")
            accepts = unb64_json(unpaid.headers["payment-required"])["accepts"][0]
            # The buyer echoes nothing (and could echo anything): the seller's words go on.
            signature = sign_for(accepts, payer)
            paid = await client.get("/api/weather", headers={"PAYMENT-SIGNATURE": signature})
        await facilitator.aclose()
        return paid

    assert run(go()).status_code == 200
    listed = call(facilitator_for(market, catalog), "GET", "/discovery/resources").json()
    (item,) = listed["items"]
    assert item["resource"] == "https://weather.example/api/weather"
    assert item["serviceName"] == "Weather Co" and item["tags"] == ["weather", "maps"]
    assert item["description"] == "Weather for a city"
    assert item["accepts"][0]["payTo"] == pay_to
    assert item["extensions"]["bazaar"] == declare_http("GET", WEATHER)


def test_without_discovery_the_402_is_as_before(market: Market, store: PaymentStore) -> None:
    response = call(_paywall(market, store, None), "GET", "/api/weather")
    header = unb64_json(response.headers["payment-required"])
    assert "extensions" not in header
    assert set(header["resource"]) == {"url", "description", "mimeType"}


def test_a_paid_tool_declaration_is_what_the_spec_shows() -> None:
    declared = declare_tool(
        "fetch",
        {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        description="A page of the blog",
        example={"path": "/posts/a"},
        output_example="the page's text",
    )
    assert declared["info"]["input"]["type"] == "mcp"
    assert declared["info"]["input"]["toolName"] == "fetch"
    assert declared["info"]["output"] == {"type": "json", "example": "the page's text"}
    assert validate_discovery_extension(declared).valid
    with pytest.raises(PaywallConfigError, match="transport"):
        declare_tool("fetch", {"type": "object"}, transport="carrier-pigeon")


CONFIG = """
upstream = "http://127.0.0.1:9"
public_url = "https://weather.example"
[discovery]
service_name = "Weather Co"
tags = ["weather"]
icon_url = "https://cdn.example/w.png"
name = "Weather"
[[routes]]
path = "/api/weather"
price = "0.01 USDC"
description = "Weather for a city"
[routes.discovery]
input = { city = "Paris" }
input_schema = { properties = { city = { type = "string" } }, required = ["city"] }
output = { temperature = 12 }
[[routes]]
path = "/posts/*"
price = "0.01 USDC"
[routes.discovery]
listed_path = "/posts/first"
"""


def test_the_config_declares_each_route(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG)
    discovery = load_config(path).discovery
    assert discovery is not None
    assert discovery.service == ServiceMetadata(
        "Weather Co", ("weather",), "https://cdn.example/w.png"
    )
    declared = discovery.declaration("/api/weather", "GET")
    assert declared is not None
    assert declared["info"]["input"]["queryParams"] == {"city": "Paris"}
    assert declared["info"]["output"]["example"] == {"temperature": 12}
    assert discovery.listed_path("/posts/*") == "/posts/first"


ROUTE = '[[routes]]\npath = "/a"\nprice = "1"\n[routes.discovery]\n'


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[discovery]\nservice_name = "' + "x" * 40 + '"', "service_name"),
        ('[discovery]\ntags = ["a", "A"]', "tag"),
        ('[discovery]\nicon_url = "http://127.0.0.1/i.png"', "icon_url"),
        ('[discovery]\nwho = "me"', "unknown keys"),
        ('[discovery]\nmanifest = "yes"', "manifest"),
        (
            '[[routes]]\npath = "/a"\nprice = "1"\n[routes.discovery]\nbody_type = "xml"',
            "body_type",
        ),
        (
            '[[routes]]\npath = "/a"\nprice = "1"\n[routes.discovery]\nlisted_path = "/a/*"',
            "listed_path",
        ),
        ('[[routes]]\npath = "/a"\nprice = "1"\n[routes.discovery]\nnope = 1', "unknown keys"),
        (ROUTE + 'input_schema = { "$ref" = "https://evil.example/s.json" }', "would drop"),
        (ROUTE + 'output = { text = "' + "x" * 5000 + '" }', "keep the examples short"),
        (
            ROUTE
            + 'input = { city = 3 }\ninput_schema = { properties = { city = { type = "string" } } }',
            "would drop",
        ),
    ],
)
def test_a_bad_discovery_setting_is_one_clear_line(tmp_path: Path, extra: str, needle: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text('upstream = "http://127.0.0.1:9"\n' + extra + "\n")
    with pytest.raises(PaywallConfigError, match=needle):
        load_config(path)
