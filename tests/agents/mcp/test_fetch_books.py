"""The agent's books record a page bought through a site's ``fetch`` tool as the page's canonical URL.

Real parts: the module's anvil and token, the test site behind
``PaywallMiddleware`` with its ``/mcp`` (``site_mount``) on uvicorn at
127.0.0.1, and an agent with its own SQLite books paying through
``PayingSession``. Two articles bought over MCP are two resources in the
books, each the URL the site's HTTP edge names it by, and the purpose keeps
the tool and server they were bought through. Attacks on the path (dot
segments, encoded separators, another host spelt into it, a query or
fragment, non-ASCII, an overlong one) never move the recorded host off the
MCP server's, and a path the seller would refuse is recorded as the tool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from farthing.agents.mcp.binding import bought_resource, tool_resource
from farthing.agents.mcp.session import PayingSession, ToolCall, open_mcp
from farthing.agents.reservations import booked_payments
from farthing.paywall import PaymentStore
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.mcp.mount import site_mount
from farthing.web import HostGuard
from tests.agents.mcp.conftest import Buyer, Shop, make_buyer
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    chain_env,
    free_port,
    paywalled,
    serve_in_thread,
)

__all__ = ["chain_env"]

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def site_url(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fetch-books")
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    paywall = paywalled(chain_env, store, receipts=Receipts.ephemeral(), public_url=url)
    app = HostGuard(site_mount(paywall, paywall), hosts=["127.0.0.1", "localhost"])
    with serve_in_thread(app, port=port):
        yield url
    store.dispose()


@pytest.fixture
def buyer(chain_env: ChainEnv, site_url: str, tmp_path: Path) -> Iterator[Buyer]:
    shop = Shop(
        chain_env.chain,
        chain_env.asset,
        chain_env.token,
        chain_env.owner,
        chain_env.merchant,
        "",
        f"{site_url}/mcp",
    )
    made = make_buyer(shop, tmp_path)
    yield made
    made.database.dispose()


def _fetch(buyer: Buyer, path: str) -> ToolCall:
    async def go() -> ToolCall:
        url = buyer.shop.mcp_url
        async with open_mcp(url, buyer.payer.settings) as session:
            paying = PayingSession(session, buyer.payer, url)
            return await paying.call_tool(
                "fetch", {"path": path}, max_price=PRICE_ATOMIC, purpose="read the series"
            )

    return asyncio.run(go())


def test_each_article_bought_over_mcp_is_its_own_url_in_the_books(
    buyer: Buyer, site_url: str
) -> None:
    first = _fetch(buyer, "/articles/one")
    second = _fetch(buyer, "/articles/x/../two?utm=feed")
    assert first.delivered and second.delivered, (first, second)
    assert (first.resource, second.resource) == (
        f"{site_url}/articles/one",
        f"{site_url}/articles/two",
    )
    booked = sorted(booked_payments(buyer.books), key=lambda p: p.resource)
    assert [(p.resource, p.state, p.amount) for p in booked] == [
        (f"{site_url}/articles/one", "posted", PRICE_ATOMIC),
        (f"{site_url}/articles/two", "posted", PRICE_ATOMIC),
    ]
    via = f"read the series (through MCP tool fetch at {site_url}/mcp)"
    assert [p.purpose for p in booked] == [via, via]
    assert first.outcome is not None and first.outcome.url == f"{site_url}/articles/one"


def test_a_hostile_path_never_moves_the_recorded_host() -> None:
    server = "https://blog.example/mcp"
    tool = tool_resource(server, "fetch")
    cases = {
        "/posts/hello": "https://blog.example/posts/hello",
        "/posts/./a/../hello/": "https://blog.example/posts/hello/",
        "/posts/hello?x=1": "https://blog.example/posts/hello",
        "//evil.example/posts": "https://blog.example/evil.example/posts",
        "/@evil.example": "https://blog.example/@evil.example",
        "/../../../etc/passwd": "https://blog.example/etc/passwd",
        "/caf%C3%A9": "https://blog.example/caf%C3%A9",
        "/posts/%2e%2e/admin": tool,  # the seller refuses encoded separators
        "/posts;/admin": tool,
        "/a\\b": tool,
        "posts/hello": tool,
        "/with space": tool,
        "/café": tool,
        "/" + "a" * 3000: tool,
        "": tool,
    }
    for path, expected in cases.items():
        got = bought_resource(server, "fetch", {"path": path})
        assert got == expected, path
        assert urlsplit(got).hostname == "blog.example", path
    assert bought_resource(server, "fetch", {"path": 7}) == tool
    assert bought_resource(server, "fetch", {}) == tool
    # Another tool's path is its own business: recorded as the tool.
    weather = bought_resource(server, "weather", {"path": "/posts/hello"})
    assert weather == tool_resource(server, "weather")
    # The site is the MCP server's URL without its /mcp.
    assert bought_resource("https://b.example/blog/mcp/", "fetch", {"path": "/p"}) == (
        "https://b.example/blog/p"
    )
    assert bought_resource("https://b.example:8443/rpc", "fetch", {"path": "/p"}) == (
        "https://b.example:8443/rpc/p"
    )
