"""Anyone who can list in a public facilitator's catalog (any payer: the catalog lists what the buyer echoes) steers ``farthing agent run --discover`` into the agent's own network: an entry at ``http://169.254.169.254/…`` or ``http://127.0.0.1:…/admin`` is fetched by the agent and read into its model.

Found from outside: ``agents/discovery.py`` checked a listing's URL for
``http(s)``, userinfo and control characters, never for where it points, and
``agent run --discover`` starts from every kept listing (a GET before any
402). Now a catalog that is not itself on this machine or a private network
never yields a listing whose host is a loopback or private name, or an IP
literal that is not global in any spelling a resolver takes (decimal, hex,
octal, IPv4-mapped, full-width, percent-encoded). A catalog on 127.0.0.1 (a
dev setup) may still list local sites. Here a Fake of a third-party catalog
(a seam we do not own) over ``httpx.ASGITransport``, read by the real
:func:`farthing.agents.discovery.discover`.

The facilitator's side too, for readers that are not Farthing's: ``farthing
facilitator serve`` reachable beyond this machine (a non-loopback bind, a
public URL or another allowed host) no longer catalogs a resource at such a
host; the payment settles all the same. Real payments settle on the memory
chain through the facilitator's HTTP app with its SQLite catalog.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from farthing.agents.discovery import Found, discover
from farthing.paywall.discovery import Catalog
from tests.paywall.discovery.conftest import Market, call, facilitator_for, market

__all__ = ["market"]

OFFER = {"scheme": "exact", "network": "eip155:1", "asset": "0xA", "payTo": "0xB", "amount": "1"}


def _entry(url: str) -> dict[str, Any]:
    return {"resource": url, "type": "http", "description": "cheap", "accepts": [OFFER]}


def _discover(facilitator: str, urls: list[str]) -> Found:
    async def search(request: Request) -> JSONResponse:
        return JSONResponse({"resources": [_entry(url) for url in urls]})

    transport = httpx.ASGITransport(app=Starlette(routes=[Route("/discovery/search", search)]))
    return asyncio.run(discover(facilitator, "weather", transport=transport))


PRIVATE = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:8080/admin",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://0.0.0.0/",
    "http://10.0.0.5/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://printer.local/",
    "http://db.internal/",
    "http://app.localhost/",
    "http://\uff11\uff12\uff17.0.0.1/",
    "http://%31%32%37.0.0.1/",
    "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_a_public_catalog_never_points_the_agent_into_its_network(url: str) -> None:
    found = _discover("https://catalog.example", [url, "https://shop.example/w"])
    assert found.error is None
    assert [x.url for x in found.listings] == ["https://shop.example/w"]


def test_public_addresses_are_kept() -> None:
    urls = ["https://shop.example/w", "http://8.8.8.8/w", "http://[2606:4700::1111]/w"]
    found = _discover("https://catalog.example", urls)
    assert [x.url for x in found.listings] == urls


def test_a_catalog_on_this_machine_may_list_local_sites() -> None:
    urls = ["http://127.0.0.1:8080/posts/a", "http://localhost:9000/b"]
    found = _discover("http://127.0.0.1:8402", urls)
    assert [x.url for x in found.listings] == urls


@pytest.mark.parametrize("url", PRIVATE[:8] + PRIVATE[12:16])
def test_a_public_facilitator_never_lists_a_private_resource(
    market: Market, tmp_path: Path, url: str
) -> None:
    catalog = Catalog.sqlite(tmp_path / "facilitator.sqlite", local_resources=False)
    app = facilitator_for(market, catalog)
    answer = call(app, "POST", "/settle", json=market.body(url=url))
    assert answer.status_code == 200 and answer.json()["success"] is True
    assert call(app, "GET", "/discovery/resources").json()["items"] == []
    catalog.dispose()


def test_a_local_facilitator_lists_local_sites(market: Market, tmp_path: Path) -> None:
    catalog = Catalog.sqlite(tmp_path / "facilitator.sqlite")
    app = facilitator_for(market, catalog)
    call(app, "POST", "/settle", json=market.body(url="http://127.0.0.1:8080/posts/a"))
    (item,) = call(app, "GET", "/discovery/resources").json()["items"]
    assert item["resource"] == "http://127.0.0.1:8080/posts/a"
    catalog.dispose()
