"""Paywall throughput on anvil: unpaid vs paid requests, ours vs the x402 SDK's FastAPI middleware.

One anvil, one token, one payer. Each server runs as its own process (this
script re-invoked with ``--serve``) under uvicorn on 127.0.0.1 and settles
before it responds:

* ours: ``PaywallMiddleware`` with the in-process ``LocalFacilitator`` and a
  SQLite payment store (nonce claims, records);
* theirs: the x402 SDK's ``payment_middleware`` for FastAPI with the SDK's own
  in-process ``x402Facilitator`` (exact EVM scheme, ``FacilitatorWeb3Signer``).

Payment headers are signed ahead of time by the same payer for both, so the
numbers measure the servers, not the client's signing. ``unpaid_per_s`` is
402 challenges a second on the priced route; ``paid_per_s`` is requests that
are verified, settled on-chain and served. The last line is one JSON object.

    python benchmarks/bench_paywall.py [--paid 120] [--concurrency 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import payloads
import servers

PRICE_ATOMIC = 10_000


# ---------------------------------------------------------------- the servers


def _serve(kind: str, rpc_url: str, token: str, merchant: str, workdir: str) -> None:
    chain, asset, accounts = servers.server_chain(rpc_url, token)
    app: Any
    if kind == "ours":
        from farthing.paywall import PaidRoute

        app = servers.our_paywall(PaidRoute("/paid", PRICE_ATOMIC), chain=chain,
                          relayer=accounts[3].signer(), merchant=merchant, asset=asset,
                          workdir=workdir)  # fmt: skip
    else:
        from x402 import x402Facilitator, x402ResourceServer
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.exact import ExactEvmServerScheme, register_exact_evm_facilitator

        signer = FacilitatorWeb3Signer(
            private_key=accounts[4].private_key.get_secret_value(), rpc_url=rpc_url
        )
        facilitator = register_exact_evm_facilitator(
            x402Facilitator(), signer, networks=chain.network
        )
        server = x402ResourceServer(facilitator)
        server.register(chain.network, ExactEvmServerScheme())
        app = servers.x402_sdk_app(server, scheme="exact", price_atomic=PRICE_ATOMIC,
                           merchant=merchant, asset=asset, network=chain.network)  # fmt: skip
    sock, url = servers.listen()
    servers.serve(app, sock, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paid", type=int, default=120, help="paid requests per server")
    payloads.add_load_arguments(parser, concurrency_help="workers", paid_seconds_max=15.0)
    args = parser.parse_args()

    with servers.anvil_stage("bench-paywall-", payer_funds=10_000 * 10**6, channels=False) as stage:
        results: dict[str, float] = {}
        for kind in ("ours", "x402"):
            process, ready = servers.start_server(
                __file__, "--serve", kind, stage.rpc_url, stage.asset.address, stage.merchant,
                stage.workdir, log=Path(stage.workdir) / f"{kind}.log",
            )  # fmt: skip
            paid_url = f"{ready['url']}/paid"
            try:
                headers = payloads.exact_headers(
                    payloads.offer(paid_url, "exact"), stage.payer, args.paid
                )
                if kind == "ours":
                    results["unpaid_per_s"] = asyncio.run(
                        payloads.unpaid_per_s(paid_url, args.seconds, args.concurrency)
                    )
                lanes = [headers[n :: args.concurrency] for n in range(args.concurrency)]
                paid = asyncio.run(payloads.paid_per_s(paid_url, lanes, args.paid_seconds_max))
                results["paid_per_s" if kind == "ours" else "x402_sdk_paid_per_s"] = paid
            finally:
                servers.stop_server(process)
            print(
                f"{kind}: {json.dumps({k: round(v, 1) for k, v in results.items()})}",
                file=sys.stderr,
            )
        settled = stage.token.balance_of(stage.merchant) // PRICE_ATOMIC
    report = {
        "bench": "paywall",
        "unpaid_per_s": round(results["unpaid_per_s"], 1),
        "paid_per_s": round(results["paid_per_s"], 1),
        "x402_sdk_paid_per_s": round(results["x402_sdk_paid_per_s"], 1),
        "ratio_vs_x402": round(results["paid_per_s"] / results["x402_sdk_paid_per_s"], 2),
        "settled_on_chain": int(settled),
        "concurrency": args.concurrency,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    servers.serve_or_run(main, _serve)
