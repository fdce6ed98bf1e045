"""A public-looking host name that resolves into a private network is neither cataloged by a public facilitator nor listed to the agent from a public catalog, and a slow resolver never hangs either.

``local_host`` reads a host as written, so ``intranet.attacker.example``
passed it while its DNS answered ``10.1.2.3`` or ``127.0.0.1``: a stranger's
catalog entry could still steer a reader into its own network. Now the
resolver is asked (``farthing.paywall.discovery.resolver``), bounded in time.
The resolver is a seam we do not own: ``FakeResolver`` answers fixed
addresses, ``FakeSlowResolver`` never answers (a DNS server that hangs), and
``FakeLocalAlias`` asks the real system resolver for ``localhost`` in the
attacker's name's place (a real resolution to a real loopback address).
Payments settle for real on the memory chain through the facilitator's HTTP
app with its SQLite catalog; the agent's side reads a Fake of a third-party
catalog over ``httpx.ASGITransport`` with the real ``discover``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from farthing.agents.discovery import Found, discover
from farthing.paywall.discovery import Catalog
from farthing.paywall.discovery.resolver import SystemResolver, resolved_refusal
from farthing.wallet.chain.memory import MemoryChain
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.paywall.discovery.conftest import Market, call, facilitator_for


@pytest.fixture(scope="module")
def market() -> Iterator[Market]:
    """A market on a memory chain of this module's own: its blocks move no other module's clock."""
    chain = MemoryChain(accounts=5)
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[4].signer()
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    yield Market(chain, asset, token, owner, relayer)
    chain.close()


OFFER = {"scheme": "exact", "network": "eip155:1", "asset": "0xA", "payTo": "0xB", "amount": "1"}
PUBLIC = "93.184.216.34"


class FakeResolver:
    """A DNS we do not run: fixed answers; a name it does not know does not resolve."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def addresses(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError("Name or service not known")
        return self.answers[host]


class FakeSlowResolver:
    """A DNS server that never answers."""

    async def addresses(self, host: str) -> Sequence[str]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class FakeLocalAlias:
    """The attacker's name, resolved as the real system resolves ``localhost``."""

    async def addresses(self, host: str) -> Sequence[str]:
        return await SystemResolver().addresses("localhost")


HOSTILE = FakeResolver(
    {
        "shop.example": [PUBLIC],
        "intranet.attacker.example": ["10.1.2.3"],
        "metadata.attacker.example": ["169.254.169.254"],
        "mixed.attacker.example": [PUBLIC, "127.0.0.1"],
        "mapped.attacker.example": ["::ffff:192.168.0.7"],
        "scoped.attacker.example": ["fe80::1%eth0"],
        "odd.attacker.example": ["not-an-address"],
        "v6.shop.example": ["2606:4700::1111"],
    }
)


def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    async def judge(host: str) -> str | None:
        return await resolved_refusal(host, HOSTILE, timeout_s=2.0)

    for host in (
        "intranet.attacker.example",
        "metadata.attacker.example",
        "mixed.attacker.example",
        "mapped.attacker.example",
        "scoped.attacker.example",
        "odd.attacker.example",
        "localhost",  # local as written: the resolver is not even asked
    ):
        assert asyncio.run(judge(host)) == "private_resource_url", host
    assert "localhost" not in HOSTILE.asked
    for host in ("shop.example", "v6.shop.example", "nowhere.example"):
        assert asyncio.run(judge(host)) is None, host


def test_a_real_resolution_to_loopback_is_refused() -> None:
    addresses = asyncio.run(SystemResolver().addresses("localhost"))
    assert addresses and all(a in ("127.0.0.1", "::1") for a in addresses)
    refused = asyncio.run(resolved_refusal("intranet.attacker.example", FakeLocalAlias()))
    assert refused == "private_resource_url"


def test_a_resolver_that_hangs_costs_the_bound_and_no_more() -> None:
    started = time.monotonic()
    assert asyncio.run(resolved_refusal("slow.example", FakeSlowResolver(), timeout_s=0.2)) is None
    assert time.monotonic() - started < 2.0


def _discover(urls: list[str], resolver: Any) -> Found:
    async def search(request: Request) -> JSONResponse:
        items = [
            {"resource": u, "type": "http", "description": "d", "accepts": [OFFER]} for u in urls
        ]
        return JSONResponse({"resources": items})

    transport = httpx.ASGITransport(app=Starlette(routes=[Route("/discovery/search", search)]))
    found = discover("https://catalog.example", "w", transport=transport, resolver=resolver)
    return asyncio.run(found)


def test_a_public_catalog_never_lists_a_name_that_resolves_inside() -> None:
    urls = [
        "https://intranet.attacker.example/admin",
        "https://shop.example/w",
        "https://metadata.attacker.example/latest",
        "https://mixed.attacker.example/x",
        "https://v6.shop.example/w",
    ]
    found = _discover(urls, HOSTILE)
    assert found.error is None
    assert [x.url for x in found.listings] == [
        "https://shop.example/w",
        "https://v6.shop.example/w",
    ]


def test_a_slow_resolver_does_not_hang_the_agent() -> None:
    started = time.monotonic()
    found = _discover(["https://a.example/1", "https://b.example/2"], FakeSlowResolver())
    assert [x.url for x in found.listings] == ["https://a.example/1", "https://b.example/2"]
    assert time.monotonic() - started < 6.0  # both names side by side: one bound of 2 s


def test_a_public_facilitator_does_not_catalog_a_name_that_resolves_inside(
    market: Market, tmp_path: Path
) -> None:
    catalog = Catalog.sqlite(tmp_path / "f.sqlite", local_resources=False, resolver=HOSTILE)
    app = facilitator_for(market, catalog)
    for url in (
        "https://intranet.attacker.example/admin",
        "https://mapped.attacker.example/x",
        "https://shop.example/weather",
    ):
        answer = call(app, "POST", "/settle", json=market.body(url=url))
        assert answer.status_code == 200 and answer.json()["success"] is True  # it settles
    listed = [i["resource"] for i in call(app, "GET", "/discovery/resources").json()["items"]]
    assert listed == ["https://shop.example/weather"]
    catalog.dispose()


def test_a_slow_resolver_does_not_hold_the_facilitator(market: Market, tmp_path: Path) -> None:
    catalog = Catalog(
        f"sqlite:///{tmp_path / 'f.sqlite'}",
        local_resources=False,
        resolver=FakeSlowResolver(),
        resolve_timeout_s=0.2,
    )
    app = facilitator_for(market, catalog)
    started = time.monotonic()
    answer = call(app, "POST", "/settle", json=market.body(url="https://slow.example/w"))
    assert answer.json()["success"] is True
    assert time.monotonic() - started < 10.0
    listed = [i["resource"] for i in call(app, "GET", "/discovery/resources").json()["items"]]
    assert listed == ["https://slow.example/w"]  # pointing nowhere now: kept (module doc)
    catalog.dispose()


def test_a_local_facilitator_does_not_ask_the_resolver(market: Market, tmp_path: Path) -> None:
    asked = FakeResolver({})
    catalog = Catalog.sqlite(tmp_path / "f.sqlite", resolver=asked)
    app = facilitator_for(market, catalog)
    call(app, "POST", "/settle", json=market.body(url="http://127.0.0.1:8080/posts/a"))
    assert asked.asked == []
    catalog.dispose()
