"""The blogger's site over MCP: ``fetch`` at the route's price, the same preview, receipts and sign-in as HTTP.

All real: the module's anvil and token, a SQLite payment database, the test
site behind ``PaywallMiddleware`` with ``/mcp`` mounted beside it
(``site_mount``) and ``HostGuard`` in front, on uvicorn at 127.0.0.1, called
with ``mcp``'s ``ClientSession`` and with plain HTTP. A reader who paid over
HTTP reads over MCP without paying again (the receipt, or sign-in-with-x);
the ``/mcp`` endpoint refuses other host names, oversized and deep bodies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import McpError

from farthing.paywall import PaymentStore
from farthing.paywall.edge.middleware import PaywallMiddleware
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.mcp.mount import site_mount
from farthing.web import HostGuard
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    challenge_of,
    free_port,
    paywalled,
    serve_in_thread,
    sign_for,
)
from tests.paywall.mcp.conftest import call_tool, mcp_session, payment_for, text_of
from tests.paywall.test_serve_origin import signed_sign_in

pytestmark = pytest.mark.anvil


@dataclass
class Site:
    url: str
    paywall: PaywallMiddleware


@pytest.fixture(scope="module")
def site(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("site-mcp")
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    paywall = paywalled(chain_env, store, receipts=Receipts.ephemeral(), public_url=url)
    app = HostGuard(site_mount(paywall, paywall), hosts=["127.0.0.1", "localhost"])
    with serve_in_thread(app, port=port):
        yield Site(url, paywall)
    store.dispose()


def _fetch(site: Site, path: str, meta: dict[str, Any] | None = None) -> Any:
    return asyncio.run(call_tool(site.url, "fetch", {"path": path}, meta))


def test_an_unpaid_article_is_its_402_result_with_the_free_preview(site: Site) -> None:
    result = _fetch(site, "/articles/one")
    assert result.isError is True
    challenge = result.structuredContent
    assert challenge["resource"]["url"] == f"{site.url}/articles/one"
    assert challenge["accepts"][0]["amount"] == str(PRICE_ATOMIC)
    assert json.loads(result.content[0].text) == challenge
    preview = result.content[1].text
    assert "The farthing" in preview and "PAID-PART" not in text_of(result)
    # The same free part as over HTTP.
    over_http = httpx.get(f"{site.url}/articles/one", timeout=30.0)
    assert over_http.status_code == 402 and over_http.json()["preview"] == preview


def test_a_paid_fetch_serves_the_page_and_its_receipt_reads_it_again(
    site: Site, chain_env: ChainEnv
) -> None:
    payer = chain_env.new_payer()
    challenge = _fetch(site, "/articles/two").structuredContent
    result = _fetch(site, "/articles/two", payment_for(challenge, payer))
    assert result.isError is False, text_of(result)
    assert text_of(result).count("PAID-PART") == 2
    assert result.meta["x402/payment-response"]["success"] is True
    receipt = result.meta["farthing/receipt"]
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    again = _fetch(site, "/articles/two", {"farthing/receipt": receipt})
    assert again.isError is False and text_of(again).count("PAID-PART") == 2
    assert receipt.startswith("farthing_receipt_")
    # Only a receipt's cookie is carried: any other cookie in its place is dropped.
    other_cookie = _fetch(site, "/articles/two", {"farthing/receipt": "session=abc"})
    assert other_cookie.isError is True and "PAID-PART" not in text_of(other_cookie)
    # A receipt is for its own page only.
    other = _fetch(site, "/articles/three", {"farthing/receipt": receipt})
    assert other.isError is True and "PAID-PART" not in text_of(other)
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC


def test_a_reader_who_paid_over_http_reads_over_mcp_without_paying(
    site: Site, chain_env: ChainEnv
) -> None:
    payer = chain_env.new_payer()
    url = f"{site.url}/articles/four"
    with httpx.Client(timeout=30.0) as http:
        challenge = challenge_of(http.get(url, headers={"accept": "application/json"}))
        paid = http.get(
            url, headers={"PAYMENT-SIGNATURE": sign_for(challenge["accepts"][0], payer)}
        )
        assert paid.status_code == 200
        cookie = paid.headers["set-cookie"].split(";", 1)[0]
    spent = chain_env.token.balance_of(payer.address)
    by_receipt = _fetch(site, "/articles/four", {"farthing/receipt": cookie})
    assert by_receipt.isError is False and text_of(by_receipt).count("PAID-PART") == 2
    # An agent proves it with its wallet instead: sign-in-with-x from the 402's extension.
    info = _fetch(site, "/articles/four").structuredContent["extensions"]["sign-in-with-x"]["info"]
    header = signed_sign_in(info, payer, chain_env.chain.network)
    by_wallet = _fetch(site, "/articles/four", {"sign-in-with-x": header})
    assert by_wallet.isError is False and text_of(by_wallet).count("PAID-PART") == 2
    # The same sign-in again is spent; a wallet that never paid is not let in.
    assert _fetch(site, "/articles/four", {"sign-in-with-x": header}).isError is True
    stranger = signed_sign_in(info, chain_env.new_payer(), chain_env.chain.network)
    assert _fetch(site, "/articles/four", {"sign-in-with-x": stranger}).isError is True
    assert chain_env.token.balance_of(payer.address) == spent


def test_a_free_path_is_free_and_a_bad_path_is_refused(site: Site) -> None:
    free = _fetch(site, "/free")
    assert free.isError is False and text_of(free) == "free"
    for bad in ("articles/x", "/a b", "/%2e%2e/articles/x", "/x#y", "/" + "a" * 3000):
        refused = _fetch(site, bad)
        assert refused.isError is True and "PAID-PART" not in text_of(refused), bad
    assert _fetch(site, "/articles/../articles/five").structuredContent["accepts"]


def test_paid_routes_are_listed_as_resources(site: Site) -> None:
    async def go() -> Any:
        async with mcp_session(site.url) as session:
            templates = await session.list_resource_templates()
            free = await session.read_resource(f"{site.url}/free")
            with pytest.raises(McpError) as unpaid:
                await session.read_resource(f"{site.url}/articles/six")
            error = unpaid.value.error
            assert error.code == 402 and error.data["accepts"][0]["amount"] == str(PRICE_ATOMIC)
            with pytest.raises(McpError) as elsewhere:
                await session.read_resource("http://evil.example/articles/six")
            assert elsewhere.value.error.code == -32602
            return templates, free

    templates, free = asyncio.run(go())
    uris = {t.uriTemplate for t in templates.resourceTemplates}
    assert f"{site.url}/articles/{{part1}}" in uris
    assert free.contents[0].text == "free"


def test_mcp_refuses_other_hosts_and_oversized_or_deep_bodies(site: Site) -> None:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with httpx.Client(timeout=30.0) as http:
        forged = http.post(
            f"{site.url}/mcp", headers={**headers, "Host": "evil.example"}, content=b"{}"
        )
        assert forged.status_code == 421
        large = http.post(f"{site.url}/mcp", headers=headers, content=b" " * 70_000)
        assert large.status_code == 413 and large.json()["error"] == "body_too_large"
        deep = http.post(f"{site.url}/mcp", headers=headers, content=b"[" * 100 + b"]" * 100)
        assert deep.status_code == 400 and deep.json()["error"] == "json_too_deep"
        for method in ("GET", "DELETE", "PUT", "OPTIONS"):
            odd = http.request(method, f"{site.url}/mcp", headers=headers)
            assert odd.status_code == 405 and odd.headers["allow"] == "POST", method
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        batch = http.post(f"{site.url}/mcp", headers=headers, json=[listing, listing])
        assert batch.status_code == 400
        meta = {"x402/payment": {"a": [[[[[[[[[[1]]]]]]]]]]}}
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "fetch", "arguments": {"path": "/articles/x"}, "_meta": meta},
        }
        answered = http.post(f"{site.url}/mcp", headers=headers, json=call)
        assert answered.status_code == 200
        result = answered.json()["result"]
        assert result["isError"] is True and result["structuredContent"]["accepts"]
