"""A paywalled app as its own killable process, for the lease, crash and relayer tests.

``python tests/paywall/lease_server.py CONFIG_JSON`` serves the test app behind
``PaywallMiddleware`` on a free port of 127.0.0.1 and prints one JSON line
``{"url": ...}`` once it listens. CONFIG_JSON holds ``rpc_url``, ``token``,
``merchant``, ``database_url`` (the payment store), ``relayer_index`` (the anvil
dev account that settles), and optionally ``ledger_database_url`` (revenue
books), ``claim_lease_s`` and ``shared_nonces`` (allocate the relayer's nonces
in the payment database, so processes may share the key).

Set ``FARTHING_CRASH_AT`` in its environment to have it kill itself at a
named crash point (``farthing.faults``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from farthing.console import emit_json
from farthing.paywall import LocalFacilitator, PaymentStore
from farthing.paywall.cli import revenue_books
from farthing.paywall.facilitator.cli import bind_socket, serve_app
from farthing.wallet.chain import RpcChain
from farthing.wallet.token import read_asset
from tests.paywall.conftest import ChainEnv, paywalled


def main() -> None:
    config = json.loads(sys.argv[1])
    chain = RpcChain(config["rpc_url"], timeout_s=5.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, config["token"])
    relayer = chain.dev_accounts()[int(config["relayer_index"])].signer()
    store = PaymentStore(config["database_url"])
    facilitator = LocalFacilitator(
        chain, relayer, nonce_store=store if config.get("shared_nonces") else None
    )
    env = ChainEnv(None, chain, asset, None, None, relayer, config["merchant"])  # type: ignore[arg-type]
    options = {}
    if "claim_lease_s" in config:
        options["claim_lease_s"] = float(config["claim_lease_s"])
    app = paywalled(
        env,
        store,
        facilitator=facilitator,
        books=revenue_books(config.get("ledger_database_url")),
        **options,
    )
    sock = bind_socket("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    emit_json({"url": f"http://{host}:{port}"})
    serve_app(app, sock)


if __name__ == "__main__":
    main()
