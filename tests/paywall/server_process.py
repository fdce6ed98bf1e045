"""A paywalled app as its own process, for the multi-process tests.

``python tests/paywall/server_process.py RPC_URL TOKEN MERCHANT DB RELAYER_INDEX``
serves the test app behind ``PaywallMiddleware`` on a free port of 127.0.0.1,
with the in-process facilitator settling as anvil dev account RELAYER_INDEX,
and prints one JSON line ``{"url": ...}`` once it listens.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from farthing.console import emit_json
from farthing.paywall import LocalFacilitator, PaymentStore
from farthing.paywall.facilitator.cli import bind_socket, serve_app
from farthing.wallet.chain import RpcChain
from farthing.wallet.token import read_asset
from tests.paywall.conftest import ChainEnv, paywalled


def main() -> None:
    rpc_url, token, merchant, db, relayer_index = sys.argv[1:6]
    chain = RpcChain(rpc_url, timeout_s=5.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, token)
    relayer = chain.dev_accounts()[int(relayer_index)].signer()
    env = ChainEnv(None, chain, asset, None, None, relayer, merchant)  # type: ignore[arg-type]
    app = paywalled(env, PaymentStore.sqlite(db), facilitator=LocalFacilitator(chain, relayer))
    sock = bind_socket("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    emit_json({"url": f"http://{host}:{port}"})
    serve_app(app, sock)


if __name__ == "__main__":
    main()
