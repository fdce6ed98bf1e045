"""A developer's ``PaidTools`` tool is cataloged by ``farthing facilitator serve``, found by the agent and paid.

All real, on the session's memory chain: our facilitator's app with its
catalog in a SQLite file on uvicorn (127.0.0.1), a FastMCP server whose
tools are sold with ``PaidTools`` through a ``RemoteFacilitator`` to it,
served by ``PaidTools.app(public_url=...)`` on another uvicorn, and an agent
with its own books. A tool's 402 declares ``extensions.bazaar`` of type
``mcp`` at the server's MCP endpoint; after one sale the catalog lists it
(keyed by endpoint and tool name), ``discover`` finds it and the agent's
``PayingSession`` pays it at exactly its price. Attacks: a caller's Host
header never moves the declared URL, a server with no public URL declares
nothing, and a public URL that is not an http(s) origin fails at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.fastmcp import FastMCP

from farthing.agents.discovery import discover
from farthing.agents.mcp.session import PayingSession, open_mcp
from farthing.agents.reservations import booked_payments
from farthing.paywall import LocalFacilitator, PaymentStore, PaywallOptions, RemoteFacilitator
from farthing.paywall.discovery import Catalog, Search, ServiceMetadata, SiteDiscovery
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.mcp.tools import PaidTools
from farthing.wallet.chain.memory import MemoryChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.agents.mcp.conftest import PRICE, Shop, make_buyer
from tests.conftest import free_port
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anyio


@dataclass
class Listed:
    shop: Shop
    catalog: Catalog
    endpoint: str


def _tools(facilitator: Any, shop_folder: Path, asset: Any, merchant: str) -> PaidTools:
    """The weather tools, settling through ``facilitator``'s app by ``RemoteFacilitator``.

    Over ``httpx.ASGITransport``: the seller's side of the HTTP API is the
    same, and no connection outlives the test (the tool server has no lifespan
    to close one in).
    """
    server = FastMCP("weather", stateless_http=True, json_response=True)
    remote = RemoteFacilitator(
        "http://facilitator.test", timeout_s=10.0, transport=httpx.ASGITransport(facilitator)
    )
    options = PaywallOptions(
        routes=(),
        facilitator=remote,
        store=PaymentStore.sqlite(shop_folder / "paywall.sqlite"),
        pay_to=merchant,
        asset=asset,
        discovery=SiteDiscovery(service=ServiceMetadata("Weather Tools", ("weather",))),
    )
    paid = PaidTools(server, options=options)

    @paid.tool(PRICE, description="The forecast for a city.", example={"city": "Lisbon"})
    async def forecast(city: str) -> str:
        return f"sunny in {city}"

    return paid


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listed]:
    # A memory chain of this module's own: its blocks move no other module's clock.
    memory_chain = MemoryChain(accounts=8)
    folder = tmp_path_factory.mktemp("tools-cataloged")
    accounts = memory_chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[7].signer()
    asset = deploy_stablecoin(memory_chain, sender=owner)
    token = Stablecoin(memory_chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    merchant = LocalSigner.generate().address
    catalog = Catalog.sqlite(folder / "catalog.sqlite")
    facilitator = LocalFacilitator(memory_chain, relayer, assets=(asset,))
    app = facilitator_app(facilitator, catalog=catalog)
    with serve_in_thread(app) as facilitator_url:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        paid = _tools(app, folder, asset, merchant)
        with serve_in_thread(paid.app(public_url=base), port=port):
            shop = Shop(memory_chain, asset, token, owner, merchant, facilitator_url, f"{base}/mcp")
            yield Listed(shop, catalog, f"{base}/mcp")
    catalog.dispose()
    memory_chain.close()


async def _wait_listed(catalog: Catalog, kind: str) -> list[dict[str, Any]]:
    """The catalog's entries of ``kind``; it records just after the facilitator's answer."""
    for _ in range(200):
        items = catalog.search(Search(kind=kind)).items
        if items:
            return items
        await asyncio.sleep(0.02)
    return []


async def test_a_paid_tool_is_declared_cataloged_found_and_paid(
    listed: Listed, tmp_path: Path
) -> None:
    (tmp_path / "first").mkdir()
    buyer = make_buyer(listed.shop, tmp_path / "first")
    try:
        async with open_mcp(listed.endpoint, buyer.payer.settings) as session:
            paying = PayingSession(session, buyer.payer, listed.endpoint)
            terms = await paying.probe("forecast", {"city": "Oslo"})
            assert terms.result is not None
            challenge = terms.result.structuredContent or {}
            assert challenge["resource"]["url"] == listed.endpoint
            assert challenge["resource"]["serviceName"] == "Weather Tools"
            declared = challenge["extensions"]["bazaar"]["info"]["input"]
            assert declared["type"] == "mcp" and declared["toolName"] == "forecast"
            assert declared["example"] == {"city": "Lisbon"}
            assert declared["inputSchema"]["required"] == ["city"]
            first = await paying.call_tool("forecast", {"city": "Oslo"}, max_price=PRICE)
        assert first.delivered, first
    finally:
        buyer.database.dispose()

    (entry,) = await _wait_listed(listed.catalog, "mcp")
    assert entry["resource"] == listed.endpoint
    assert entry["extensions"]["bazaar"]["info"]["input"]["toolName"] == "forecast"

    (tmp_path / "second").mkdir()
    second = make_buyer(listed.shop, tmp_path / "second")
    try:
        found = await discover(listed.shop.facilitator_url, "forecast")
        (listing,) = [x for x in found.listings if x.kind == "mcp"]
        assert (listing.url, listing.tool_name, listing.amount) == (
            listed.endpoint,
            "forecast",
            PRICE,
        )
        assert listing.service_name == "Weather Tools"
        async with open_mcp(listing.url, second.payer.settings) as session:
            paying = PayingSession(session, second.payer, listing.url)
            bought = await paying.call_tool(
                listing.tool_name or "", {"city": "Porto"}, max_price=listing.amount
            )
        assert bought.delivered and bought.text(100) == "sunny in Porto", bought
        (payment,) = booked_payments(second.books)
        assert (payment.state, payment.amount) == ("posted", PRICE)
        assert listed.shop.token.balance_of(second.agent.address) == 1_000_000 - PRICE
    finally:
        second.database.dispose()


async def test_the_host_header_never_moves_the_declared_url(listed: Listed) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "forecast", "arguments": {"city": "Oslo"}},
    }
    headers = {
        "host": "evil.example",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    async with httpx.AsyncClient(timeout=10.0) as client:
        answer = await client.post(listed.endpoint, json=body, headers=headers)
    result = answer.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["resource"]["url"] == listed.endpoint


def test_without_a_public_url_nothing_is_declared_and_a_bad_one_fails(tmp_path: Path) -> None:
    paid = _tools(
        "http://127.0.0.1:9", tmp_path, _asset_for_config(), LocalSigner.generate().address
    )
    assert paid.endpoint is None
    assert paid.paywall().options.discovery is None  # a catalog could list no mcp:// URL
    for bad in (
        "ftp://tools.example",
        "https://user@tools.example",
        "https://tools.example/?q=1",
        "https://tools.example/#x",
        "https://tools example",
        "tools.example",
    ):
        fresh = _tools(None, tmp_path, _asset_for_config(), paid.options.pay_to)
        with pytest.raises(PaywallConfigError, match="public URL"):
            fresh.app(public_url=bad)
    late = _tools(None, tmp_path, _asset_for_config(), paid.options.pay_to)
    late.paywall()
    with pytest.raises(PaywallConfigError, match="before the first call"):
        late.app(public_url="https://tools.example")


def test_a_declaration_a_facilitator_would_drop_fails_when_the_tool_is_registered(
    tmp_path: Path,
) -> None:
    paid = _tools(None, tmp_path, _asset_for_config(), LocalSigner.generate().address)
    with pytest.raises(PaywallConfigError, match="declaration is"):

        @paid.tool(PRICE, description="a long story " * 400)  # over what buyers may echo
        async def wordy(city: str) -> str:
            return city

    with pytest.raises(PaywallConfigError, match="example must be"):

        @paid.tool(PRICE, example=["Lisbon"])  # type: ignore[arg-type]
        async def listed(city: str) -> str:
            return city

    # Neither was registered: the server's tools and the paywall's routes are as before.
    assert [t.name for t in paid.server._tool_manager.list_tools()] == ["forecast"]
    assert [r.path for r in paid.paywall().options.routes] == ["/forecast"]


def _asset_for_config() -> Any:
    from farthing.wallet.money import Asset

    return Asset(
        network="eip155:31337",
        address="0x" + "11" * 20,
        decimals=6,
        symbol="USDC",
        name="USDC",
        version="2",
    )
