"""A small paywalled blog: what ``farthing demo`` serves and the agents' tests buy from.

Six short articles, four about the farthing coin and two that are not. Each
article's first third is free (the paywall puts it in the 402 as a preview);
the whole article costs ``0.1 CNY``, paid in the stablecoin at a stated rate
(0.1385 USDC per CNY by default, so 0.01385 USDC). The index page ``/`` is
free and links every article with its title, which is how an agent finds them.

Given ``channels`` (the paywall's ``ChannelOptions``), every article is also
offered through x402 ``batch-settlement``, after ``exact`` in ``accepts``:
``exact`` stays the default, and a reader who buys many articles can pay with
one deposit and a voucher per article instead of a transaction each.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from farthing.paywall import (
    Facilitator,
    PaidRoute,
    PaymentStore,
    PaywallMiddleware,
    PaywallOptions,
    RevenueBook,
)
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.wallet.money import Asset

__all__ = [
    "ARTICLES",
    "CNY_RATE",
    "PREVIEW_FRACTION",
    "PRICE",
    "Article",
    "blog_site",
    "paywalled_blog",
]

PRICE: Final = "0.1 CNY"
CNY_RATE: Final = "0.1385"  # USDC per one CNY
PREVIEW_FRACTION: Final = Decimal("0.34")  # the first third of each article is free


@dataclass(frozen=True, slots=True)
class Article:
    slug: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/posts/{self.slug}"

    def html(self) -> str:
        body = "\n".join(f"<p>{html.escape(p)}</p>" for p in self.paragraphs)
        return (
            f"<html><head><title>{html.escape(self.title)}</title></head><body><article>"
            f"<h1>{html.escape(self.title)}</h1>\n{body}\n</article></body></html>"
        )


ARTICLES: Final[tuple[Article, ...]] = (
    Article(
        "quarter-penny",
        "The farthing: a quarter of a penny",
        (
            "The farthing was the smallest English coin in common use: a quarter of a penny.",
            "Its name comes from the Old English feorthing, a fourth part.",
            "Farthings were first struck in silver under Henry III in the thirteenth century.",
            "For centuries it bought a little bread, a candle or a pin.",
            "Four farthings made a penny, and 960 of them a pound sterling.",
            "Its small size made it easy to lose and hard to forge profitably.",
        ),
    ),
    Article(
        "copper-farthings",
        "Minting the farthing: from silver to copper and bronze",
        (
            "Silver farthings were tiny, so small that they were easily lost.",
            "In 1613 the Crown licensed copper farthing tokens instead of silver ones.",
            "Regal copper farthings followed under Charles II in 1672.",
            "From 1860 the farthing was minted in bronze, with Britannia on the reverse.",
            "The wren design by Humphrey Paget appeared on the farthing from 1937.",
            "The Royal Mint struck the last farthings for circulation in 1956.",
        ),
    ),
    Article(
        "withdrawn-1960",
        "Why the farthing was withdrawn in 1960",
        (
            "Inflation after the Second World War left the farthing worth almost nothing.",
            "Shops priced goods in farthings less and less, and banks disliked handling them.",
            "The Royal Mint stopped striking farthings for circulation after 1956.",
            "The farthing ceased to be legal tender at the end of 1960.",
            "Its withdrawal came a decade before decimalisation in 1971.",
            "Prices such as 11¾d disappeared from shop windows with it.",
        ),
    ),
    Article(
        "collecting-farthings",
        "Collecting farthings today",
        (
            "Collectors still trade farthings, most for a few pence more than their old value.",
            "Early silver farthings of Henry III are scarce and fetch real money.",
            "The 1860 bronze farthing and the wren farthings are popular starting points.",
            "Condition matters more than age for most common dates of the coin.",
            "Proof farthings from Royal Mint sets are the prize of many collections.",
            "A complete run of wren farthings from 1937 to 1956 is within reach of beginners.",
        ),
    ),
    Article(
        "sourdough",
        "Sourdough starters for beginners",
        (
            "A sourdough starter is flour and water that wild yeast has made its home.",
            "Feed it every day at first, discarding half before each feeding.",
            "A warm kitchen speeds it up; a cold one gives a sourer loaf.",
            "When it doubles within hours of a feeding, it is ready to bake with.",
            "Keep it in the fridge between bakes and feed it once a week.",
            "Rye flour gives a lively starter faster than white flour alone.",
        ),
    ),
    Article(
        "pruning-apples",
        "Pruning apple trees in winter",
        (
            "Winter is the time to prune apple trees, while they are dormant.",
            "Remove dead, damaged and crossing branches first.",
            "Aim for an open centre so that light and air reach the fruit.",
            "Never remove more than a quarter of the canopy in one year.",
            "Cut just above an outward-facing bud, at a slight angle.",
            "Summer pruning controls size; winter pruning encourages growth.",
        ),
    ),
)


def blog_site(
    articles: Sequence[Article] = ARTICLES, *, extra_pages: Mapping[str, str] | None = None
) -> Starlette:
    """The blog without its paywall: ``/`` lists the articles, ``/posts/{slug}`` serves one.

    ``extra_pages`` maps more free paths to HTML (the tests plant a page there
    that tries to talk the agent into paying someone else).
    """
    by_slug = {a.slug: a for a in articles}
    links = "\n".join(f'<li><a href="{a.path}">{html.escape(a.title)}</a></li>' for a in articles)
    index = f"<html><body><h1>The Farthing Blog</h1><ul>\n{links}\n</ul></body></html>"
    pages = dict(extra_pages or {})

    async def home(request: Request) -> Response:
        return HTMLResponse(index)

    async def post(request: Request) -> Response:
        article = by_slug.get(request.path_params["slug"])
        if article is None:
            return HTMLResponse("<p>no such post</p>", status_code=404)
        return HTMLResponse(article.html())

    async def page(request: Request) -> Response:
        return HTMLResponse(pages[request.url.path])

    routes = [Route("/", home), Route("/posts/{slug}", post)]
    routes += [Route(path, page) for path in pages]
    return Starlette(routes=routes)


def paywalled_blog(
    *,
    facilitator: Facilitator,
    store: PaymentStore,
    pay_to: str,
    asset: Asset,
    books: RevenueBook | None = None,
    price: str = PRICE,
    rates: Mapping[str, str] | None = None,
    articles: Sequence[Article] = ARTICLES,
    extra_pages: Mapping[str, str] | None = None,
    channels: ChannelOptions | None = None,
) -> PaywallMiddleware:
    """The blog behind ``PaywallMiddleware``: every article at ``price``, its first third free."""
    schemes = ("exact",) if channels is None else ("exact", "batch-settlement")
    return PaywallMiddleware(
        blog_site(articles, extra_pages=extra_pages),
        options=PaywallOptions(
            routes=[
                PaidRoute(
                    "/posts/*",
                    price,
                    description="a blog post",
                    mime_type="text/html",
                    preview_fraction=PREVIEW_FRACTION,
                    schemes=schemes,
                )
            ],
            facilitator=facilitator,
            store=store,
            books=books,
            pay_to=pay_to,
            asset=asset,
            rates=dict(rates) if rates is not None else {"CNY": CNY_RATE},
            channels=channels,
        ),
    )
