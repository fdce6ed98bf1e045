"""A paywalled blog on the local dev chain: the first third of each post is free.

Run the dev chain in one terminal, then this file::

    farthing chain dev
    python examples/paywall_blog.py            # serves http://127.0.0.1:8000

``GET /posts/farthing`` answers 402 with the x402 v2 terms and the free
preview; any x402 client pays 0.01 USDC (or the CNY price below) to anvil's
dev account 1 and gets the whole post. ``/`` is free. Payments are recorded in
``./paywall-example.sqlite`` and booked as revenue in
``./ledger-example.sqlite`` (``farthing ledger report --merchant ADDRESS``).
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import (
    LedgerRevenueBook,
    LocalFacilitator,
    PaidRoute,
    PaymentStore,
    PaywallMiddleware,
    PaywallOptions,
)
from farthing.wallet.chain import RpcChain
from farthing.wallet.deployment import load_dev_deployment

POST = """<html><body><article>
<h1>The farthing</h1>
<p>The farthing was a quarter of a penny, the smallest English coin in common use.</p>
<p>It was struck in silver from the thirteenth century and in copper from 1613.</p>
<p>After decimalisation loomed, it stopped being legal tender at the end of 1960.</p>
<p>Collectors still trade them, usually for a few pence more than they were worth.</p>
</article></body></html>"""


async def post(request: Request) -> HTMLResponse:
    return HTMLResponse(POST)


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Posts: /posts/farthing (0.01 USDC), /posts/cny/farthing (0.1 CNY)\n")


def main() -> None:
    data_dir = Path(os.environ.get("FARTHING_DATA_DIR") or Path.home() / ".farthing")
    deployment = load_dev_deployment(data_dir)
    chain = RpcChain(deployment.rpc_url)
    accounts = chain.dev_accounts()  # anvil's public dev keys: the local chain only
    ledger = LedgerDatabase(LedgerSettings(database_url="sqlite:///ledger-example.sqlite"))
    upgrade_database(ledger)
    blog = Starlette(
        routes=[Route("/", home), Route("/posts/{slug}", post), Route("/posts/cny/{slug}", post)]
    )
    article = {"mime_type": "text/html", "preview_fraction": Decimal("0.34")}
    app = PaywallMiddleware(
        blog,
        options=PaywallOptions(
            routes=[
                PaidRoute(
                    "/posts/cny/*", "0.1 CNY", description="a post, priced in yuan", **article
                ),
                PaidRoute("/posts/*", "0.01 USDC", description="a post", **article),
            ],
            facilitator=LocalFacilitator(chain, accounts[3].signer()),
            store=PaymentStore.sqlite("paywall-example.sqlite"),
            books=LedgerRevenueBook(ledger),
            pay_to=accounts[1].address,
            asset=deployment.token,
            rates={"CNY": "0.1385"},  # USDC per one CNY
        ),
    )
    uvicorn.run(app, host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
