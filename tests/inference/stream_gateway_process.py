"""The paid gateway as its own process, to be killed with SIGKILL mid-stream (test_gateway_stream_kill.py).

``python tests/inference/stream_gateway_process.py CONFIG.json`` serves the
gateway with channels on 127.0.0.1 under uvicorn, in front of the fake vLLM
(its own process at ``upstream_url``, streaming one token every 0.2 s). Its channel store
is the test's SQLite file, read without a chain (``escrow=None``): the rows
were made by the test's own gateway on the memory chain, so this process
charges and holds on them exactly as that one would. Its facilitator, on a
fresh memory chain of its own, is never called: plain vouchers on a known
channel need none. The config file holds the receiver authorizer's key; it is
never printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from farthing.inference import Gateway, GatewayPayment
from farthing.paywall import LocalFacilitator, PaymentStore
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain
from farthing.wallet.chain import MemoryChain
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.inference.conftest import fast_settings


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    asset = Asset(**config["asset"])
    store = ChannelStore(
        config["channel_store_url"],
        domain=ChannelDomain(config["chain_id"]),
        network=asset.network,
        escrow=None,
    )
    chain = MemoryChain()
    relayer = chain.dev_accounts()[3].signer()
    authorizer = LocalSigner(SecretStr(config["authorizer_key"]))
    settings = fast_settings(upstream_timeout_s=60.0, upstream_url=config["upstream_url"])
    payment = GatewayPayment(
        facilitator=LocalFacilitator(chain, relayer),
        store=PaymentStore.sqlite(Path(config["payment_store"])),
        asset=asset,
        pay_to=config["pay_to"],
        channels=ChannelOptions(
            store,
            authorizer,
            withdraw_delay_s=config["withdraw_delay_s"],
            claim_in_background=False,
            charge_lease_s=config["charge_lease_s"],
        ),
    )
    app = Gateway(settings, payment=payment)
    print(json.dumps({"port": config["port"]}), flush=True)
    uvicorn.run(app, host="127.0.0.1", port=config["port"], log_level="warning")


if __name__ == "__main__":
    main()
