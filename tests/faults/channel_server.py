"""A paywall that sells through batch-settlement channels, for the channel crash tests: run it, kill it.

Run as ``python channel_server.py CONFIG_JSON``. ``farthing paywall serve``
cannot offer channels from its options yet, so this builds what it would:
``PaywallMiddleware`` in front of a small Starlette app whose ``GET /api/data``
is the paid content (it carries the crash suite's marker), one route offering
``batch-settlement`` only, the local facilitator with its relayer key, a
SQLite payment store and channel store, and revenue books in a SQLite ledger.
Claims are not made in the background: the tests claim with ``farthing
paywall claim``, so when a claim happens is theirs to choose.

The config names the RPC URL, the token, the merchant, the store and ledger
URLs, the price, and the anvil dev accounts (by index) that relay and that
authorize claims. A test arms a crash point with ``FARTHING_CRASH_AT``. Once
it listens, the process prints one JSON line ``{"url": ...}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import (
    LocalFacilitator,
    PaidRoute,
    PaymentStore,
    PaywallMiddleware,
    PaywallOptions,
)
from farthing.paywall.facilitator.cli import bind_socket, serve_app
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain
from farthing.wallet.chain import RpcChain
from farthing.wallet.token import read_asset

MARKER = "paid-data"  # tests/faults/harness.py MARKER


def build(config: dict[str, Any]) -> PaywallMiddleware:
    chain = RpcChain(config["rpc_url"], timeout_s=10.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, config["token"])
    accounts = chain.dev_accounts()
    payments = PaymentStore(config["store_url"])
    channels = ChannelStore(
        config["store_url"],
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )
    ledger = LedgerDatabase(LedgerSettings(database_url=config["revenue_url"]))
    upgrade_database(ledger)

    async def data(request: Any) -> JSONResponse:
        return JSONResponse({"data": MARKER})

    return PaywallMiddleware(
        Starlette(routes=[Route("/api/data", data)]),
        options=PaywallOptions(
            routes=[PaidRoute("/api/data", int(config["price"]), schemes=("batch-settlement",))],
            facilitator=LocalFacilitator(
                chain, accounts[int(config["relayer"])].signer(), nonce_store=payments
            ),
            store=payments,
            pay_to=config["merchant"],
            asset=asset,
            books=LedgerRevenueBook(ledger),
            channels=ChannelOptions(
                channels,
                accounts[int(config["authorizer"])].signer(),
                withdraw_delay_s=int(config["withdraw_delay_s"]),
                claim_in_background=False,
            ),
        ),
    )


def main() -> None:
    app = build(json.loads(sys.argv[1]))
    sock = bind_socket("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    print(json.dumps({"url": f"http://{host}:{port}"}), flush=True)
    serve_app(app, sock)


if __name__ == "__main__":
    main()
