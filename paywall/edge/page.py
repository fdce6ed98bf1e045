"""The 402 page a browser gets: the free part of the article, then a pay box.

A request whose ``Accept`` names ``text/html`` gets this page instead of the
JSON 402 (x402 clients never ask for HTML, so they keep the JSON). The page
keeps the site around the article: when the app's answer is an HTML document,
only its article element (the first of ``preview_selectors`` that matches,
``article`` then ``main`` by default, else ``body``) is cut down to its free
preview, followed by the pay box; the header, navigation and stylesheets stay.
Cutting uses selectolax (the lexbor HTML parser) to find the element and
:func:`farthing.paywall.edge.preview.split_html` to cut it between whole blocks.

All script is Farthing's own, served at :data:`SCRIPT_PATH` (no CDN, no inline
script, no eval): the terms travel in a ``<script type="application/json">``
data block, which no policy executes. So the page works under a strict
Content-Security-Policy; when the site sends none, the page sends
:data:`STRICT_CSP` itself (:func:`page_headers`), and the page is never framed
by another site unless the site's own policy says so.

What the wallet signs comes only from the paywall: the terms block is the
first element of ``<head>``, before anything of the site's, with ``<``, ``>``
and ``&`` escaped so no text in them (a crafted path in the resource URL) can
end or bend it, and every ``farthing-*`` id in the site's document is removed,
so nothing the site's HTML carries (a comment, a hidden block) is taken for
the terms or the pay box. The script checks both again and draws the price
from the very terms it signs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from importlib import resources
from typing import Any, Final

from selectolax.lexbor import LexborHTMLParser

from farthing.paywall.edge.preview import split_html, split_preview

__all__ = [
    "ASSET_PATHS",
    "PREVIEW_SELECTORS_DEFAULT",
    "RESERVED_ID_PREFIX",
    "SCRIPT_PATH",
    "STRICT_CSP",
    "STYLE_PATH",
    "asset",
    "network_label",
    "page_headers",
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
RESERVED_ID_PREFIX: Final = "farthing-"
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
        "</aside>"
    )


# "<", ">" and "&" only occur inside JSON strings, where their escapes mean the
# same: with none left, no text ("</script>", "<!--<script>") can end the block.
_JSON_ESCAPES: Final = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _head(terms: Mapping[str, Any]) -> str:
    """What goes first in ``<head>``: the terms, then our script and stylesheet.

    First, so the site's HTML cannot come before the terms, and its ``<base>``
    cannot move where our script is loaded from.
    """
    data = json.dumps(terms, separators=(",", ":")).translate(_JSON_ESCAPES)
    return (
        f'<script type="application/json" id="farthing-terms">{data}</script>'
        f'<script src="{SCRIPT_PATH}" defer></script><link rel="stylesheet" href="{STYLE_PATH}">'
    )


def _drop_reserved_ids(tree: LexborHTMLParser) -> None:
    """The site's document keeps none of our ids: only the paywall's own elements carry them."""
    for node in tree.css("[id]"):
        if (node.attributes.get("id") or "").strip().lower().startswith(RESERVED_ID_PREFIX):
            del node.attrs["id"]


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


def page_headers(site_headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The page's Content-Security-Policy and X-Frame-Options, given the site's answer's headers.

    The site's own policies are kept (our script is same-origin), else
    :data:`STRICT_CSP`. A pay page in another site's frame could be clicked
    through (clickjacking), so unless one of the site's policies says who may
    frame it, a second policy says: nobody (or the site itself, if its
    ``X-Frame-Options`` is ``SAMEORIGIN``). Every policy a page gets is
    enforced, so the added one only narrows. The site's ``X-Frame-Options`` is
    kept, else ``DENY``.
    """
    site = list(site_headers)
    policies = _header_values(site, b"content-security-policy")
    frame_options = next(iter(_header_values(site, b"x-frame-options")), None)
    headers = [(b"content-security-policy", p) for p in policies] or [
        (b"content-security-policy", STRICT_CSP.encode("latin-1"))
    ]
    if policies and not any(_names_frame_ancestors(p) for p in policies):
        same_origin = frame_options is not None and frame_options.strip().lower() == b"sameorigin"
        ancestors = b"'self'" if same_origin else b"'none'"
        headers.append((b"content-security-policy", b"frame-ancestors " + ancestors))
    headers.append((b"x-frame-options", frame_options or b"DENY"))
    return headers


def _names_frame_ancestors(policy: bytes) -> bool:
    return any(
        directive.strip().lower().split(b" ", 1)[0] == b"frame-ancestors"
        for directive in policy.split(b";")
    )


def render_page(
    body: str | None,
    media_type: str,
    fraction: Decimal,
    terms: Mapping[str, Any],
    *,
    blocks: int | None = None,
    selectors: Sequence[str] = PREVIEW_SELECTORS_DEFAULT,
    title: str = "Payment required",
) -> str:
    """The page: the site's own document with its article cut, or a plain page around the preview."""
    kind = media_type.split(";", 1)[0].strip().lower()
    box = _pay_box(terms)
    if body is not None and kind in ("text/html", "application/xhtml+xml"):
        tree = LexborHTMLParser(body)
        _drop_reserved_ids(tree)
        element = next(
            (found for found in (tree.css_first(s) for s in selectors) if found is not None),
            tree.body,
        )
        if element is not None and tree.head is not None:
            preview = (
                split_html(element.inner_html or "", fraction, blocks=blocks)
                if fraction > 0
                else ""
            )
            element.inner_html = preview + box
            tree.head.inner_html = _head(terms) + (tree.head.inner_html or "")
            document = tree.html or ""
            # lexbor writes the site's doctype back (as <!DOCTYPE html>): one, never two.
            if document[:9].upper() == "<!DOCTYPE":
                return document
            return "<!DOCTYPE html>\n" + document
    preview = split_preview(body or "", fraction, media_type, blocks=blocks) if fraction > 0 else ""
    shown = f"<pre>{html.escape(preview)}</pre>" if preview else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head>{_head(terms)}<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body class="farthing-page"><main><article>{shown}{box}</article></main></body></html>'
    )
