"""The 402 page a browser gets: the free part of the article, then a pay box.

A request whose ``Accept`` names ``text/html`` gets this page instead of the
JSON 402 (x402 clients never ask for HTML, so they keep the JSON). The page
keeps the site around the article: when the app's answer is an HTML document,
only its article element (the first of ``preview_selectors`` that matches,
``article`` then ``main`` by default, else ``body``) is cut down to its free
preview, followed by the pay box; the header, navigation and stylesheets stay.
Cutting uses selectolax (the lexbor HTML parser) to find the element and
:func:`farthing.paywall.preview.split_html` to cut it between whole blocks.

All script is Farthing's own, served at :data:`SCRIPT_PATH` (no CDN, no inline
script, no eval): the terms travel in a ``<script type="application/json">``
data block, which no policy executes. So the page works under a strict
Content-Security-Policy; when the site sends none, the page sends
:data:`STRICT_CSP` itself.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any, Final

from selectolax.lexbor import LexborHTMLParser

from farthing.paywall.preview import split_html, split_preview

__all__ = [
    "ASSET_PATHS",
    "PREVIEW_SELECTORS_DEFAULT",
    "SCRIPT_PATH",
    "STRICT_CSP",
    "STYLE_PATH",
    "asset",
    "network_label",
    "render_page",
    "wants_html",
]

SCRIPT_PATH: Final = "/.farthing/paywall.js"
STYLE_PATH: Final = "/.farthing/paywall.css"
ASSET_PATHS: Final = {
    SCRIPT_PATH: ("paywall.js", b"text/javascript; charset=utf-8"),
    STYLE_PATH: ("paywall.css", b"text/css; charset=utf-8"),
}
PREVIEW_SELECTORS_DEFAULT: Final = ("article", "main")
STRICT_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_NETWORK_LABELS: Final = {
    "eip155:8453": "Base",
    "eip155:84532": "Base Sepolia",
    "eip155:31337": "the local development chain",
}


def wants_html(accept: str | None) -> bool:
    """A browser navigation: ``Accept`` names ``text/html`` (x402 clients never do)."""
    if not accept:
        return False
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() in ("text/html", "application/xhtml+xml"):
            return "q=0" not in params.replace(" ", "") or "q=0." in params.replace(" ", "")
    return False


def network_label(network: str) -> str:
    return _NETWORK_LABELS.get(network, f"chain {network.split(':', 1)[-1]}")


def asset(path: str) -> tuple[bytes, bytes] | None:
    """The bytes and content type of one of Farthing's own page assets, or None."""
    entry = ASSET_PATHS.get(path)
    if entry is None:
        return None
    name, media_type = entry
    return resources.files("farthing.paywall").joinpath("static", name).read_bytes(), media_type


def _pay_box(terms: Mapping[str, Any]) -> str:
    price = terms["price"]
    fiat = (
        f"{html.escape(price['fiatAmount'])} {html.escape(price['fiatCurrency'])}"
        if price.get("fiatCurrency")
        else None
    )
    usdc = html.escape(price["display"])
    where = html.escape(network_label(str(price["network"])))
    headline = (
        f"<strong>{fiat}</strong> ({usdc} on {where})"
        if fiat
        else f"<strong>{usdc}</strong> on {where}"
    )
    # "</" cannot end the data block early: JSON allows the escaped slash.
    data = json.dumps(terms, separators=(",", ":")).replace("</", "<\\/")
    sign_in = (
        '<button type="button" class="farthing-secondary" id="farthing-signin">'
        "Already paid? Sign in with your wallet</button>"
        if terms.get("signIn")
        else ""
    )
    return (
        '<aside id="farthing-paywall" class="farthing-paywall">'
        '<p class="farthing-lead">The rest of this article is for paying readers.</p>'
        f'<p class="farthing-price">Read it all for {headline}.</p>'
        '<button type="button" id="farthing-pay">Pay with wallet</button>'
        f"{sign_in}"
        '<p id="farthing-status" class="farthing-status" role="status" aria-live="polite"></p>'
        f'<script type="application/json" id="farthing-terms">{data}</script>'
        "</aside>"
    )


_HEAD_ASSETS: Final = (
    f'<link rel="stylesheet" href="{STYLE_PATH}"><script src="{SCRIPT_PATH}" defer></script>'
)


def render_page(
    body: str | None,
    media_type: str,
    fraction: Decimal,
    terms: Mapping[str, Any],
    *,
    selectors: Sequence[str] = PREVIEW_SELECTORS_DEFAULT,
    title: str = "Payment required",
) -> str:
    """The page: the site's own document with its article cut, or a plain page around the preview."""
    kind = media_type.split(";", 1)[0].strip().lower()
    box = _pay_box(terms)
    if body is not None and kind in ("text/html", "application/xhtml+xml"):
        tree = LexborHTMLParser(body)
        element = next(
            (found for found in (tree.css_first(s) for s in selectors) if found is not None),
            tree.body,
        )
        if element is not None and tree.head is not None:
            preview = split_html(element.inner_html or "", fraction) if fraction > 0 else ""
            element.inner_html = preview + box
            tree.head.inner_html = (tree.head.inner_html or "") + _HEAD_ASSETS
            return "<!DOCTYPE html>\n" + (tree.html or "")
    preview = split_preview(body or "", fraction, media_type) if fraction > 0 else ""
    shown = f"<pre>{html.escape(preview)}</pre>" if preview else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>{_HEAD_ASSETS}</head>"
        f'<body class="farthing-page"><main><article>{shown}{box}</article></main></body></html>'
    )
