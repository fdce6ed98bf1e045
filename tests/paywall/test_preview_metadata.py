"""No paid text leaves in an unpaid 402 through the page's metadata: JSON-LD ``articleBody`` and descriptions are cut to what the preview shows.

An article whose ``<head>`` holds what SEO plugins write (a JSON-LD
``articleBody`` with the whole text, an ``og:description`` and a
``twitter:description`` quoting the last paragraph, a ``description`` quoting
the first) is served behind the real middleware on anvil. Both unpaid
answers, the JSON 402's ``preview`` and the browser's 402 page, are searched
for the paid paragraphs; the free description, the title and the rest of the
head stay. The cut itself is checked directly too.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.edge.metadata import free_metadata
from farthing.paywall.edge.preview import split_preview
from tests.paywall.conftest import ChainEnv, asgi_client, run

FIRST = "The farthing was a quarter of a penny, the smallest coin in common use."
SECOND = "It was minted in silver first and in copper later, for centuries."
PAID = "PAID-PART: collectors still trade them today, a few pence each."
LD = {
    "@context": "https://schema.org",
    "@type": "NewsArticle",
    "headline": "The farthing",
    "datePublished": "2024-05-01",
    "author": {"@type": "Person", "name": "A. Writer"},
    "articleBody": f"{FIRST} {SECOND} {PAID}",
    "description": PAID,
    "isAccessibleForFree": False,
}
DOCUMENT = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>The farthing</title>
<meta name="description" content="{FIRST[:40]}…">
<meta property="og:title" content="The farthing">
<meta property="og:description" content="{PAID}">
<meta name="twitter:description" content="{PAID}">
<link rel="stylesheet" href="/site.css">
<script type="application/ld+json">{json.dumps(LD)}</script>
</head><body><article><h1>The farthing</h1>
<p>{FIRST}</p>
<p>{SECOND}</p>
<p>{PAID}</p>
<p>PAID-PART: the coin stopped being legal tender at the end of 1960, long after.</p>
</article></body></html>"""


def test_the_preview_keeps_only_metadata_the_free_part_shows() -> None:
    preview = split_preview(DOCUMENT, Decimal("0.4"), "text/html")
    assert FIRST in preview and "PAID-PART" not in preview
    assert '<meta name="description"' in preview  # an excerpt of the free part stays
    assert '<meta property="og:title" content="The farthing">' in preview
    assert "<title>The farthing</title>" in preview and "/site.css" in preview
    block = preview.split('<script type="application/ld+json">', 1)[1].split("</script>", 1)[0]
    data = json.loads(block)
    assert "articleBody" not in data and "description" not in data
    assert data["headline"] == "The farthing" and data["author"]["name"] == "A. Writer"


def test_metadata_that_cannot_be_read_is_dropped_and_safe_values_stay_byte_for_byte() -> None:
    deep = "[" * 100 + "]" * 100
    document = (
        f'<head><script type="application/ld+json">{deep}</script>'
        '<script type="application/ld+json">{"name": "x", "url": "https://a.example/"}</script>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "</head><body><p>free words only here</p></body>"
    )
    kept = free_metadata(document, "<p>free words only here</p>")
    assert deep not in kept
    assert '{"name": "x", "url": "https://a.example/"}' in kept
    assert 'content="width=device-width, initial-scale=1"' in kept
    # A rewritten block escapes "</", so a kept value cannot close the script early.
    sneaky = (
        '<script type="application/ld+json">'
        '{"text": "paid words that are not free", "name": "a<\\/script>b"}</script>'
    )
    rewritten = free_metadata(sneaky, "")
    assert "paid words" not in rewritten and rewritten.count("</script>") == 1
    assert '"a<\\/script>b"' in rewritten


def _site() -> Starlette:
    async def article(request: Request) -> Response:
        return HTMLResponse(DOCUMENT)

    return Starlette(routes=[Route("/articles/{slug}", article)])


@pytest.mark.anvil
def test_neither_unpaid_402_carries_the_paid_text_from_the_head(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    """Finding 7: the JSON preview and the HTML 402 page both carried the last paragraph."""
    app = PaywallMiddleware(
        _site(),
        options=PaywallOptions(
            routes=[
                PaidRoute(
                    "/articles/*", "0.01 USDC", mime_type="text/html",
                    preview_fraction=Decimal("0.4"),
                )
            ],
            facilitator=chain_env.facilitator(),
            store=store,
            pay_to=chain_env.merchant,
            asset=chain_env.asset,
        ),
    )  # fmt: skip

    async def go() -> tuple[Any, Any]:
        async with asgi_client(app) as client:
            api = await client.get("/articles/farthing")
            page = await client.get("/articles/farthing", headers={"Accept": "text/html"})
            return api, page

    api, page = run(go())
    assert api.status_code == 402 and page.status_code == 402
    assert "PAID-PART" not in api.text and "PAID-PART" not in page.text
    assert FIRST in api.json()["preview"] and FIRST in page.text
    assert "The farthing" in page.text
