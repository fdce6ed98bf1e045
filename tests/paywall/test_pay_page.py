"""The browser pay page signs only the paywall's own terms, survives hostile HTML and links, and cannot be framed.

Each test runs a real paywall on uvicorn in front of a small Starlette site,
against anvil with our token, and drives Debian's chromium with Playwright.
The wallets are fakes of browser extensions (tests/paywall/browser_wallets.py)
that forward signing to anvil's dev accounts, so what they were asked to sign
is recorded and what moved is read from the chain. Screenshots of each state
land in the test's temp folder.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from farthing.paywall import PaywallMiddleware, PaywallOptions
from tests.paywall.browser_wallets import (
    FakeWallet,
    chromium,
    reader_with_eip6963,
    reader_with_ethereum,
)
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    default_routes,
    paywalled,
    serve_in_thread,
)

pytestmark = [pytest.mark.browser, pytest.mark.anvil]

THIEF = "0x000000000000000000000000000000000000dEaD"
PAID = "PAID-PART: its name comes from the Old English feorthing"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _funded(chain_env: ChainEnv, index: int) -> str:
    reader = chain_env.chain.dev_accounts()[index].address
    assert chain_env.token.mint(reader, 1_000_000, sender=chain_env.owner).ok
    return reader


def _article_site(page: str, headers: dict[str, str] | None = None) -> Starlette:
    async def article(request: Request) -> Response:
        return HTMLResponse(page, headers=headers)

    return Starlette(routes=[Route("/articles/{slug}", article)])


def _paywall(chain_env: ChainEnv, site: Starlette, tmp_path: Path) -> PaywallMiddleware:
    from farthing.paywall import PaymentStore

    return PaywallMiddleware(
        site,
        options=PaywallOptions(
            routes=default_routes(),
            facilitator=chain_env.facilitator(),
            store=PaymentStore.sqlite(tmp_path / "paywall.sqlite"),
            pay_to=chain_env.merchant,
            asset=chain_env.asset,
        ),
    )


def _decoy_terms(chain_env: ChainEnv) -> str:
    """Terms a stranger's HTML could carry: 999 tokens to another address, shown as 0.01."""
    asset = chain_env.asset
    return json.dumps(
        {
            "x402Version": 2,
            "accepts": {
                "scheme": "exact", "network": asset.network, "asset": asset.address,
                "amount": "999000000", "payTo": THIEF, "maxTimeoutSeconds": 300,
                "extra": {"name": asset.name, "version": asset.version},
            },
            "resource": {"url": "http://example.test/", "description": "", "mimeType": ""},
            "price": {"amount": "10000", "display": "0.01 USDC", "asset": asset.address,
                      "network": asset.network, "symbol": "USDC"},
            "network": asset.network, "networkName": "the local development chain",
            "chainId": asset.chain_id, "serverTimeS": 0, "signIn": False,
        }
    )  # fmt: skip


def test_the_wallet_signs_the_paywalls_terms_never_a_block_in_the_sites_html(
    browser: Any, chain_env: ChainEnv, tmp_path: Path
) -> None:
    """A comment box lets a stranger put `farthing-*` elements before the pay box."""
    decoy = html.escape(_decoy_terms(chain_env), quote=False)
    page_html = (
        "<!DOCTYPE html><html><head><title>Coins</title>"
        f'<script type="application/json" id="farthing-terms">{_decoy_terms(chain_env)}</script>'
        "</head><body>"
        f'<div class="comment"><div id="farthing-terms" hidden>{decoy}</div>'
        '<p id="farthing-status">a comment</p></div>'
        "<article><h1>The farthing</h1><p>A quarter of a penny.</p><p>Minted in silver.</p>"
        f"<p>{PAID}.</p><p>PAID-PART: the end.</p></article></body></html>"
    )
    reader = _funded(chain_env, 1)
    wallet = FakeWallet(reader)
    balance = chain_env.token.balance_of
    before = balance(reader), balance(chain_env.merchant), balance(THIEF)
    app = _paywall(chain_env, _article_site(page_html), tmp_path)
    with serve_in_thread(app) as url:
        context = reader_with_ethereum(browser, chain_env, wallet)
        page = context.new_page()
        assert page.goto(url + "/articles/coins").status == 402
        price = page.locator(".farthing-price")
        assert price.inner_text() == "Read it all for 0.01 USDC on the local development chain."
        page.screenshot(path=tmp_path / "1-decoys.png", full_page=True)
        page.get_by_role("button", name="Pay with wallet").click()
        page.get_by_text(PAID).wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "2-paid.png", full_page=True)
        context.close()
    [signed] = wallet.typed_data
    assert signed["message"]["to"] == chain_env.merchant
    assert signed["message"]["value"] == str(PRICE_ATOMIC)
    assert signed["domain"]["verifyingContract"] == chain_env.asset.address
    assert balance(reader) == before[0] - PRICE_ATOMIC
    assert balance(chain_env.merchant) == before[1] + PRICE_ATOMIC
    assert balance(THIEF) == before[2]


def test_a_crafted_link_leaves_the_page_and_its_pay_button_whole(
    browser: Any, chain_env: ChainEnv, tmp_path: Path
) -> None:
    """`<!--<script>` in the path lands in the terms; it must not swallow the page."""
    from farthing.paywall import PaymentStore

    reader = _funded(chain_env, 2)
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    errors: list[str] = []
    with serve_in_thread(paywalled(chain_env, store)) as url:
        context = reader_with_ethereum(browser, chain_env, FakeWallet(reader))
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        assert page.goto(url + "/articles/%3C!--%3Cscript%3E").status == 402
        assert page.locator(".farthing-price").is_visible()
        page.screenshot(path=tmp_path / "1-crafted-link.png", full_page=True)
        page.get_by_role("button", name="Pay with wallet").click()
        page.get_by_text("PAID-PART: collectors still trade them").wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "2-paid.png", full_page=True)
        context.close()
    store.dispose()
    # The 402 itself (and the favicon's 404) log "Failed to load resource"; nothing else may.
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors


def test_the_pay_page_cannot_be_framed_by_another_site(
    browser: Any, chain_env: ChainEnv, tmp_path: Path
) -> None:
    """The site sends its own CSP without frame-ancestors, and X-Frame-Options."""
    site_csp = "default-src 'self'; script-src 'self'; style-src 'self'"
    page_html = (
        "<html><body><article><p>One.</p><p>Two.</p><p>PAID-PART</p></article></body></html>"
    )
    site = _article_site(
        page_html, {"content-security-policy": site_csp, "x-frame-options": "SAMEORIGIN"}
    )
    app = _paywall(chain_env, site, tmp_path)
    with serve_in_thread(app) as url:
        target = url + "/articles/framed"

        async def framing(request: Request) -> Response:
            return HTMLResponse(f'<html><body><iframe src="{target}" width="800" height="600">'
                                "</iframe></body></html>")  # fmt: skip

        with serve_in_thread(Starlette(routes=[Route("/", framing)])) as other:
            context = browser.new_context(viewport={"width": 900, "height": 700})
            page = context.new_page()
            refused: list[str] = []
            page.on("console", lambda m: refused.append(m.text))
            page.goto(other + "/")
            page.wait_for_timeout(1_000)
            frame = page.frame_locator("iframe")
            assert frame.locator("#farthing-pay").count() == 0
            assert any("frame-ancestors" in line for line in refused), refused
            page.screenshot(path=tmp_path / "framed.png", full_page=True)
            context.close()
        answer = httpx.get(target, headers={"accept": "text/html"})
        assert answer.status_code == 402
        assert answer.headers["x-frame-options"] == "SAMEORIGIN"  # the site's own, kept
        # The same page, opened by itself, still shows its pay box.
        context = browser.new_context()
        page = context.new_page()
        page.goto(target)
        assert page.get_by_role("button", name="Pay with wallet").is_visible()
        context.close()


def test_wallets_that_announce_themselves_are_listed_and_the_reader_chooses(
    browser: Any, chain_env: ChainEnv, tmp_path: Path
) -> None:
    """EIP-6963: two extensions announce themselves, and neither sets window.ethereum."""
    from farthing.paywall import PaymentStore

    fern, heron = FakeWallet(_funded(chain_env, 5)), FakeWallet(_funded(chain_env, 6))
    balance = chain_env.token.balance_of
    before = balance(fern.account), balance(heron.account)
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    with serve_in_thread(paywalled(chain_env, store)) as url:
        context = reader_with_eip6963(
            browser, chain_env, {"Fern Wallet": fern, "Heron Wallet": heron}
        )
        page = context.new_page()
        page.goto(url + "/articles/farthing")
        page.get_by_role("button", name="Pay with wallet").click()
        chooser = page.get_by_role("group", name="Choose a wallet")
        chooser.get_by_role("button", name="Fern Wallet").wait_for(timeout=10_000)
        assert chooser.get_by_role("button", name="Heron Wallet").is_visible()
        assert fern.asked == [] and heron.asked == []  # nothing asked before the choice
        page.screenshot(path=tmp_path / "1-choose.png", full_page=True)
        chooser.get_by_role("button", name="Heron Wallet").click()
        page.get_by_text("PAID-PART: collectors still trade them").wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "2-paid.png", full_page=True)
        context.close()
    store.dispose()
    assert fern.asked == []
    assert heron.asked.count("eth_signTypedData_v4") == 1
    assert balance(fern.account) == before[0]
    assert balance(heron.account) == before[1] - PRICE_ATOMIC


def _bent(bend: Callable[[str], str]) -> Callable[[Any], None]:
    """A Playwright route handler that changes the paywall's answer on its way into Chromium."""

    def handler(route: Any) -> None:
        answer = route.fetch()
        text = answer.text()
        changed = bend(text)
        assert changed != text, "the bend found nothing to change"
        route.fulfill(response=answer, body=changed)

    return handler


def test_a_page_where_the_terms_are_not_the_paywalls_alone_pays_nothing(
    browser: Any, chain_env: ChainEnv, tmp_path: Path
) -> None:
    """Should the site's HTML ever reach a second terms block (a parser difference), the page refuses.

    The server never sends such a page, so the test changes the answer on its
    way into Chromium: a decoy block before the paywall's, or the paywall's
    moved out of first place in <head>.
    """
    from farthing.paywall import PaymentStore

    decoy = (
        f'<script type="application/json" id="farthing-terms">{_decoy_terms(chain_env)}</script>'
    )
    bends = {
        "1-second-block": lambda page: page.replace("<body>", "<body>" + decoy, 1),
        "2-not-first": lambda page: page.replace("<head>", "<head><title>first</title>", 1),
    }
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    with serve_in_thread(paywalled(chain_env, store)) as url:
        for name, bend in bends.items():
            wallet = FakeWallet(_funded(chain_env, 7))
            context = reader_with_ethereum(browser, chain_env, wallet)
            page = context.new_page()
            page.route(url + "/articles/farthing", _bent(bend))
            page.goto(url + "/articles/farthing")
            status = page.locator("#farthing-status")
            status.get_by_text("payment terms could not be read").wait_for(timeout=10_000)
            assert page.get_by_role("button", name="Pay with wallet").is_disabled()
            page.screenshot(path=tmp_path / f"{name}.png", full_page=True)
            context.close()
            assert wallet.asked == []
    store.dispose()
