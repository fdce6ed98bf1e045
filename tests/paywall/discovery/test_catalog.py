"""The facilitator catalogs what it settles, in its database, and serves it searchably and bounded.

Real payments settle on the session's memory chain through the facilitator's
HTTP app (``httpx.ASGITransport``); the catalog is a SQLite file that a second
``Catalog`` opens after the first is gone (a restart), and PostgreSQL at
127.0.0.1:5432 when one answers. Search filters, pagination and bad queries
are exercised over HTTP.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farthing.paywall.discovery import Catalog, RouteDiscovery, declare_http, declare_tool
from farthing.paywall.discovery.catalog import CATALOG_TABLE
from tests.paywall.discovery.conftest import PRICE_ATOMIC, Market, call, facilitator_for

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _settle(market: Market, app: object, **body: object) -> dict[str, object]:
    response = call(app, "POST", "/settle", json=market.body(**body))  # type: ignore[arg-type]
    assert response.status_code == 200
    answer: dict[str, object] = response.json()
    return answer


def test_a_settled_payment_is_cataloged_and_listed(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    pay_to = market.payer(0).address
    answer = _settle(
        market,
        app,
        pay_to=pay_to,
        resource={"serviceName": "Weather Co", "tags": ["weather", "Weather", "maps"]},
    )
    assert answer["success"] is True
    listed = call(app, "GET", "/discovery/resources").json()
    assert listed["x402Version"] == 2
    assert listed["pagination"] == {"limit": 20, "offset": 0, "total": 1}
    (item,) = listed["items"]
    assert item["resource"] == "https://weather.example/api/weather"
    assert item["type"] == "http"
    assert item["serviceName"] == "Weather Co"
    assert item["tags"] == ["weather", "maps"]
    assert item["accepts"][0]["amount"] == str(PRICE_ATOMIC)
    assert item["accepts"][0]["payTo"] == pay_to
    assert item["extensions"]["bazaar"]["info"]["input"]["queryParams"] == {"city": "Paris"}
    supported = call(app, "GET", "/supported").json()
    assert "bazaar" in supported["extensions"]


def test_a_refused_payment_is_not_cataloged(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    body = market.body()
    body["paymentRequirements"]["amount"] = str(PRICE_ATOMIC * 2)  # not what was signed
    answer = call(app, "POST", "/settle", json=body).json()
    assert answer["success"] is False
    assert call(app, "GET", "/discovery/resources").json()["items"] == []


def test_search_by_text_tag_price_scheme_network_and_type(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    _settle(
        market, app, url="https://a.example/weather", amount=5_000, resource={"tags": ["weather"]}
    )
    _settle(
        market, app, url="https://b.example/weather", amount=20_000, resource={"tags": ["weather"]}
    )
    tool = declare_tool("translate", {"type": "object", "properties": {"text": {"type": "string"}}})
    _settle(
        market,
        app,
        url="https://c.example/mcp",
        declaration=tool,
        resource={"tags": ["words"], "description": "Translate text"},
    )

    def found(**params: str) -> list[str]:
        response = call(app, "GET", "/discovery/search", params={"query": "example", **params})
        assert response.status_code == 200, response.text
        return sorted(item["resource"] for item in response.json()["resources"])

    network = market.chain.network
    assert found() == [
        "https://a.example/weather",
        "https://b.example/weather",
        "https://c.example/mcp",
    ]
    assert found(query="weather kitten") == []  # every word must appear
    assert found(query="weather") == ["https://a.example/weather", "https://b.example/weather"]
    assert found(tag="WEATHER", maxAmount="10000") == ["https://a.example/weather"]
    assert found(type="mcp") == ["https://c.example/mcp"]
    assert (
        found(scheme="exact", network=network, asset=market.asset.address, maxAmount="4999") == []
    )
    assert found(network="eip155:1") == []
    assert found(query="100%_") == []  # LIKE's wildcards are plain characters here
    assert found(extensions="other") == []


def test_pagination_is_bounded_and_complete(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    for n in range(5):
        _settle(market, app, url=f"https://shop.example/item/{n}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"query": "shop", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = call(app, "GET", "/discovery/search", params=params).json()
        seen += [item["resource"] for item in page["resources"]]
        cursor = page["pagination"]["cursor"]
        assert page["partialResults"] is (cursor is not None)
        if cursor is None:
            break
    assert sorted(seen) == [f"https://shop.example/item/{n}" for n in range(5)]
    listed = call(app, "GET", "/discovery/resources", params={"limit": "2", "offset": "4"}).json()
    assert listed["pagination"] == {"limit": 2, "offset": 4, "total": 5}
    assert len(listed["items"]) == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/discovery/resources", {"limit": "0"}),
        ("/discovery/resources", {"limit": "101"}),
        ("/discovery/resources", {"offset": "-1"}),
        ("/discovery/resources", {"offset": "99999999999"}),
        ("/discovery/resources", {"maxAmount": "1.5"}),
        ("/discovery/resources", {"type": "ftp"}),
        ("/discovery/resources", {"network": "x" * 300}),
        ("/discovery/search", {}),
        ("/discovery/search", {"query": " ".join(["w"] * 9)}),
        ("/discovery/search", {"query": "a", "cursor": "forged"}),
    ],
)
def test_a_bad_query_is_a_400(
    market: Market, catalog: Catalog, path: str, params: dict[str, str]
) -> None:
    response = call(facilitator_for(market, catalog), "GET", path, params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_query"


def test_the_catalog_is_read_only(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    for path in ("/discovery/resources", "/discovery/search"):
        assert call(app, "POST", path, json={}).status_code == 405
        assert call(app, "DELETE", path).status_code == 405


def test_the_catalog_survives_a_restart(market: Market, tmp_path: Path) -> None:
    first = Catalog.sqlite(tmp_path / "restart.sqlite")
    _settle(market, facilitator_for(market, first), url="https://kept.example/a")
    first.dispose()
    again = Catalog.sqlite(tmp_path / "restart.sqlite")
    try:
        items = call(facilitator_for(market, again), "GET", "/discovery/resources").json()["items"]
        assert [item["resource"] for item in items] == ["https://kept.example/a"]
    finally:
        again.dispose()


def test_the_catalog_lives_in_postgresql(market: Market) -> None:
    try:
        catalog = Catalog(POSTGRES_URL)
    except Exception as exc:  # noqa: BLE001 - only an unreachable server skips
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {type(exc).__name__}")
    url = f"https://pg.example/{market.payer(0).address}"
    try:
        _settle(market, facilitator_for(market, catalog), url=url)
    finally:
        catalog.dispose()
    reopened = Catalog(POSTGRES_URL)
    try:
        page = call(
            facilitator_for(market, reopened), "GET", "/discovery/search", params={"query": url}
        ).json()
        assert [item["resource"] for item in page["resources"]] == [url]
    finally:
        with reopened.engine.begin() as tx:  # the server is shared: leave it as found
            tx.execute(CATALOG_TABLE.delete().where(CATALOG_TABLE.c.url == url))
        reopened.dispose()


def test_the_same_offer_is_refreshed_not_doubled(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    pay_to = market.payer(0).address
    _settle(market, app, pay_to=pay_to, amount=1_000)
    _settle(market, app, pay_to=pay_to, amount=2_000)
    (item,) = call(app, "GET", "/discovery/resources").json()["items"]
    assert item["accepts"][0]["amount"] == "2000"


def test_a_payment_to_someone_else_never_rewrites_a_sellers_entry(
    market: Market, catalog: Catalog
) -> None:
    app = facilitator_for(market, catalog)
    seller, squatter = market.payer(0).address, market.payer(0).address
    _settle(market, app, pay_to=seller, amount=5_000)
    _settle(market, app, pay_to=squatter, amount=1)  # same URL, paid to oneself
    items = call(app, "GET", "/discovery/resources").json()["items"]
    assert sorted((i["accepts"][0]["payTo"], i["accepts"][0]["amount"]) for i in items) == sorted(
        [(seller, "5000"), (squatter, "1")]
    )


def test_a_full_catalog_refuses_new_offers_and_still_settles(
    market: Market, tmp_path: Path
) -> None:
    small = Catalog.sqlite(tmp_path / "small.sqlite", entries_per_payee_max=2)
    try:
        app = facilitator_for(market, small)
        pay_to = market.payer(0).address
        for n in range(3):
            assert _settle(market, app, url=f"https://spam.example/{n}", pay_to=pay_to)["success"]
        assert call(app, "GET", "/discovery/resources").json()["pagination"]["total"] == 2
    finally:
        small.dispose()


def test_a_post_route_declaration_is_cataloged(market: Market, catalog: Catalog) -> None:
    app = facilitator_for(market, catalog)
    declared = declare_http("POST", RouteDiscovery(input_example={"q": "coins"}))
    _settle(market, app, url="https://search.example/q?secret=1#x", declaration=declared)
    (item,) = call(app, "GET", "/discovery/resources").json()["items"]
    assert item["resource"] == "https://search.example/q"  # query and fragment cut
    assert item["method"] == "POST"
