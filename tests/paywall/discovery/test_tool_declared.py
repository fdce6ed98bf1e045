"""A declaring site's ``fetch`` tool declares itself as an MCP tool, and the facilitator catalogs it so.

Real parts: the module's memory chain and token (``market``), the blog of
``farthing.agents.blog`` behind ``PaywallMiddleware`` with a ``SiteDiscovery``
and ``/mcp`` beside it (``site_mount``, ``HostGuard`` in front), settling
through the facilitator's own app (a ``RemoteFacilitator`` over
``httpx.ASGITransport``) with its catalog in SQLite, called with ``mcp``'s
``ClientSession``. Over MCP a paid page's 402 declares ``bazaar`` of type
``mcp`` (the tool's name, its input schema, the path asked as its example)
with the MCP endpoint as its resource; over HTTP the same page still
declares its GET. A sale over MCP lists the tool, keyed by that endpoint and
its name. An over-long path is not echoed into the declaration, and no HTTP
request can name a tool for the edge. The Python examples of docs/mcp.md's
"Discovery" run as written: ``declare_tool``'s declaration passes the
facilitator's check, and ``find_tools`` finds the blog's tool in the catalog
served by uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from farthing.agents.blog import paywalled_blog
from farthing.paywall import PaymentStore, PaywallMiddleware, RemoteFacilitator
from farthing.paywall.discovery import (
    Catalog,
    Search,
    ServiceMetadata,
    SiteDiscovery,
    check_declaration,
)
from farthing.paywall.discovery.validation import Checked
from farthing.paywall.mcp.fetch import FETCH_INPUT_SCHEMA
from farthing.paywall.mcp.mount import site_mount
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from farthing.web import HostGuard
from tests.paywall.conftest import run, serve_in_thread
from tests.paywall.discovery.conftest import Market, facilitator_for
from tests.paywall.mcp.conftest import payment_for

DOC = Path(__file__).resolve().parents[3] / "docs" / "mcp.md"
BLOG = "http://blog.example"
FACILITATOR = "http://facilitator.example"


@dataclass
class Site:
    app: Any
    catalog: Catalog


@pytest.fixture(scope="module")
def site(market: Market, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder: Path = tmp_path_factory.mktemp("tool-declared")
    catalog = Catalog.sqlite(folder / "facilitator.sqlite")
    facilitator = RemoteFacilitator(
        FACILITATOR, transport=httpx.ASGITransport(app=facilitator_for(market, catalog))
    )
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    blog = paywalled_blog(
        facilitator=facilitator, store=store, pay_to=LocalSigner.generate().address,
        asset=market.asset,
    )  # fmt: skip
    discovery = SiteDiscovery(service=ServiceMetadata("Farthings", ("coins",)))
    declaring = PaywallMiddleware(
        blog.app, options=replace(blog.options, discovery=discovery, public_url=BLOG)
    )
    yield Site(HostGuard(site_mount(declaring, declaring), hosts=["blog.example"]), catalog)
    store.dispose()
    catalog.dispose()


@asynccontextmanager
async def _session(app: Any) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30.0) as http,
        streamable_http_client(f"{BLOG}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _fetch(site: Site, path: str, meta: dict[str, Any] | None = None) -> CallToolResult:
    async def go() -> CallToolResult:
        async with _session(site.app) as session:
            return await session.call_tool("fetch", {"path": path}, meta=meta)

    result: CallToolResult = run(go())
    return result


def _http(site: Site, path: str, **headers: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=site.app)
        async with httpx.AsyncClient(transport=transport, base_url=BLOG) as client:
            return await client.get(path, headers={"accept": "application/json", **headers})

    response: httpx.Response = run(go())
    return response


def test_over_mcp_a_paid_page_declares_the_fetch_tool(site: Site) -> None:
    challenge = _fetch(site, "/posts/quarter-penny").structuredContent
    assert challenge is not None
    declared = challenge["extensions"]["bazaar"]
    checked = check_declaration(declared)
    assert isinstance(checked, Checked) and checked.kind == "mcp"
    assert checked.tool_name == "fetch"
    tool_input = declared["info"]["input"]
    assert tool_input["inputSchema"] == dict(FETCH_INPUT_SCHEMA)
    assert tool_input["example"] == {"path": "/posts/quarter-penny"}
    assert tool_input["transport"] == "streamable-http"
    # The bazaar spec keys a tool by its server's endpoint and its name.
    assert challenge["resource"]["url"] == f"{BLOG}/mcp"
    assert challenge["resource"]["serviceName"] == "Farthings"


def test_over_http_the_same_page_still_declares_its_get(site: Site) -> None:
    answer = _http(site, "/posts/quarter-penny")
    assert answer.status_code == 402
    challenge = unb64_json(answer.headers["payment-required"])
    assert challenge["resource"]["url"] == f"{BLOG}/posts/quarter-penny"
    assert challenge["extensions"]["bazaar"]["info"]["input"]["type"] == "http"
    # A header cannot stand in for the in-process scope key that names a tool.
    forged = _http(site, "/posts/quarter-penny", **{"farthing.tool": "x", "farthing-tool": "x"})
    assert unb64_json(forged.headers["payment-required"]) == challenge


def test_an_over_long_path_is_not_echoed_into_the_declaration(site: Site) -> None:
    path = "/posts/quarter-penny?" + "a" * 400
    result = _fetch(site, path)
    assert result.structuredContent is not None
    declared = result.structuredContent["extensions"]["bazaar"]
    assert "example" not in declared["info"]["input"]
    assert isinstance(check_declaration(declared), Checked)


def test_a_sale_over_mcp_catalogs_the_tool_by_its_endpoint(site: Site, market: Market) -> None:
    challenge = _fetch(site, "/posts/copper-farthings").structuredContent
    assert challenge is not None
    meta = payment_for(challenge, market.payer())
    # The buyer's echo names another server: the facilitator is sent the seller's own words.
    meta["x402/payment"]["resource"] = {"url": "https://evil.example/mcp", "description": "x"}
    paid = _fetch(site, "/posts/copper-farthings", meta)
    assert paid.isError is False
    page = site.catalog.search(Search(kind="mcp"))
    (item,) = page.items
    assert item["resource"] == f"{BLOG}/mcp" and item["type"] == "mcp"
    assert item["toolName"] == "fetch"
    assert item["extensions"]["bazaar"]["info"]["input"]["type"] == "mcp"


def test_the_discovery_examples_run(
    site: Site, market: Market, capsys: pytest.CaptureFixture[str]
) -> None:
    section = DOC.read_text().split("## Discovery", 1)[1]
    declaring, finding = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    exec(compile(declaring, str(DOC), "exec"), {})  # noqa: S102 - our own doc
    assert capsys.readouterr().out == "mcp forecast\n"
    challenge = _fetch(site, "/posts/withdrawn-1960").structuredContent
    assert challenge is not None
    assert (
        _fetch(site, "/posts/withdrawn-1960", payment_for(challenge, market.payer())).isError
        is False
    )
    namespace: dict[str, Any] = {}
    exec(compile(finding, str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    with serve_in_thread(facilitator_for(market, site.catalog)) as facilitator:
        found = asyncio.run(namespace["find_tools"](facilitator, "farthings"))
    assert found == [(f"{BLOG}/mcp", "fetch", int(challenge["accepts"][0]["amount"]))]
