"""Channel throughput on anvil: x402 ``batch-settlement`` against ``exact``, unpaid, and the x402 SDK's own.

One anvil, one token, our escrow contracts at the canonical addresses. Each
server is its own process (this script re-invoked with ``--serve``) under
uvicorn on 127.0.0.1:

* ours: **one** server, ``PaywallMiddleware`` with one route offering
  ``exact`` and ``batch-settlement``, the in-process ``LocalFacilitator``, a
  SQLite payment store and a SQLite channel store (claims are not made in the
  background: the run claims once at the end);
* theirs: the x402 SDK's FastAPI ``payment_middleware`` with its
  batch-settlement server scheme and its own ``BatchSettlementEvmFacilitator``
  (``FacilitatorWeb3Signer``) on our contracts.

The client is the same for both channel servers: it signs the spec's wire
payloads ahead of time (one channel per worker; the first request of each
channel carries the deposit, the rest cumulative vouchers, sent in order), so
the numbers measure the servers, not the client's signing. The deposit's
transaction is inside the timed run, amortized over the channel's requests.

* ``unpaid_per_s``: 402 challenges a second on the paid route (our server);
* ``exact_per_s``: EIP-3009 payments verified, settled on chain and served;
* ``channel_per_s`` / ``x402_sdk_channel_per_s``: voucher-paid requests;
* ``onchain_tx_per_10k``: one payer, one channel, ``--onchain-requests``
  (10,000) vouchers sent one after another to our server, then one claim and
  one settle; the transactions in the blocks of that phase, counted on chain.

The last line is one JSON object.

    python benchmarks/bench_channels.py [--exact 120] [--channel 2000] [--concurrency 8]
        [--seconds 3] [--onchain-requests 10000]
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

PRICE_ATOMIC = 1_000
WITHDRAW_DELAY_S = 900
RECEIVER_AUTHORIZER = 5  # anvil dev account index: our server's receiver authorizer
SDK_AUTHORIZER = 6
OUR_RELAYER = 3
SDK_RELAYER = 4
DEPOSIT_VALID_FOR_S = 3600


# ---------------------------------------------------------------- the servers


def _serve(kind: str, rpc_url: str, token: str, merchant: str, workdir: str) -> None:
    chain, asset, accounts = servers.server_chain(rpc_url, token)
    app: Any
    if kind == "ours":
        from farthing.paywall import PaidRoute
        from farthing.paywall.schemes.batch_settlement.server import ChannelOptions

        channels = ChannelOptions(
            servers.channel_store(chain, _database(workdir)),
            accounts[RECEIVER_AUTHORIZER].signer(),
            withdraw_delay_s=WITHDRAW_DELAY_S,
            claim_in_background=False,
        )
        app = servers.our_paywall(
            PaidRoute("/paid", PRICE_ATOMIC, schemes=("exact", "batch-settlement")),
            chain=chain, relayer=accounts[OUR_RELAYER].signer(), merchant=merchant,
            asset=asset, workdir=workdir, channels=channels,
        )  # fmt: skip
    else:
        from x402 import x402Facilitator, x402ResourceServer
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
        from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
        from x402.mechanisms.evm.batch_settlement.server import (
            BatchSettlementEvmScheme,
            BatchSettlementEvmSchemeServerConfig,
        )

        signer = FacilitatorWeb3Signer(
            private_key=accounts[SDK_RELAYER].private_key.get_secret_value(), rpc_url=rpc_url
        )
        authorizer = LocalAuthorizerSigner(accounts[SDK_AUTHORIZER].private_key.get_secret_value())
        facilitator = x402Facilitator().register(
            [chain.network], BatchSettlementEvmFacilitator(signer, authorizer_signer=authorizer)
        )
        scheme = BatchSettlementEvmScheme(
            merchant, BatchSettlementEvmSchemeServerConfig(receiver_authorizer_signer=authorizer)
        )
        server = x402ResourceServer(facilitator)
        server.register(chain.network, scheme)
        app = servers.x402_sdk_app(server, scheme="batch-settlement", price_atomic=PRICE_ATOMIC,
                           merchant=merchant, asset=asset, network=chain.network)  # fmt: skip
    sock, url = servers.listen()
    servers.serve(app, sock, url)


def _database(workdir: str) -> str:
    return f"sqlite:///{Path(workdir) / 'payments.sqlite'}"


def _start(kind: str, rpc_url: str, token: str, merchant: str, workdir: str) -> tuple[Any, str]:
    log = Path(workdir) / f"{kind}.log"
    process, ready = servers.start_server(
        __file__, "--serve", kind, rpc_url, token, merchant, workdir, log=log
    )
    return process, str(ready["url"])


# ---------------------------------------------------------------- on chain


def _transactions(chain: Any, first: int, last: int) -> int:
    eth = chain.w3.eth
    return sum(int(eth.get_block_transaction_count(n)) for n in range(first, last + 1))


def _claim_all(chain: Any, workdir: str) -> tuple[int, tuple[str, ...]]:
    """Our merchant's one claim and one settle (what ``farthing paywall claim`` does)."""
    from farthing.paywall import LocalFacilitator
    from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer

    accounts = chain.dev_accounts()
    store = servers.channel_store(chain, _database(workdir))
    try:
        claimer = ChannelClaimer(
            store,
            LocalFacilitator(chain, accounts[OUR_RELAYER].signer()),
            accounts[RECEIVER_AUTHORIZER].signer(),
        )
        report = asyncio.run(claimer.tick(force=True))
    finally:
        store.dispose()
    if report.failures:
        raise RuntimeError(f"claim failed: {report.failures[0]}")
    return report.settled, report.transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=int, default=120, help="exact paid requests")
    parser.add_argument("--channel", type=int, default=2000, help="voucher requests per server")
    payloads.add_load_arguments(
        parser, concurrency_help="workers (one channel each)", paid_seconds_max=60.0
    )
    parser.add_argument(
        "--onchain-requests", type=int, default=10_000, help="vouchers on one channel, counted"
    )
    args = parser.parse_args()
    if min(args.exact, args.channel, args.concurrency, args.onchain_requests) < 1:
        parser.error("every count must be at least 1")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    per_lane = -(-args.channel // args.concurrency)
    with servers.anvil_stage("bench-channels-", payer_funds=10**12, channels=True) as stage:
        chain, asset, payer, workdir = stage.chain, stage.asset, stage.payer, stage.workdir

        def lanes(offered: dict[str, Any], count: int, width: int) -> list[list[str]]:
            return [
                payloads.channel_headers(chain, asset, offered, payer, count,
                                deposit_valid_for_s=DEPOSIT_VALID_FOR_S)
                for _ in range(width)
            ]  # fmt: skip

        def channel_rate(paid_url: str, name: str) -> tuple[dict[str, Any], float]:
            """The server's channel offer, and its voucher-paid requests a second."""
            offered = payloads.offer(paid_url, "batch-settlement")
            lanes_of = lanes(offered, per_lane, args.concurrency)
            rate = asyncio.run(payloads.paid_per_s(paid_url, lanes_of, args.paid_seconds_max))
            say(f"batch-settlement ({name}): {rate:.1f}/s")
            return offered, rate

        results: dict[str, float] = {}
        process, url = _start("ours", stage.rpc_url, asset.address, stage.merchant, workdir)
        try:
            paid_url = f"{url}/paid"
            results["unpaid_per_s"] = asyncio.run(
                payloads.unpaid_per_s(paid_url, args.seconds, args.concurrency)
            )
            say(f"unpaid: {results['unpaid_per_s']:.1f}/s")
            exact = payloads.exact_headers(payloads.offer(paid_url, "exact"), payer, args.exact)
            exact_lanes = [exact[n :: args.concurrency] for n in range(args.concurrency)]
            results["exact_per_s"] = asyncio.run(
                payloads.paid_per_s(paid_url, exact_lanes, args.paid_seconds_max)
            )
            say(f"exact: {results['exact_per_s']:.1f}/s")
            offered, results["channel_per_s"] = channel_rate(paid_url, "ours")

            # One payer, one channel: every transaction from the deposit to the settle.
            (lane,) = lanes(offered, args.onchain_requests, 1)
            first_block = chain.block_number() + 1
            asyncio.run(payloads.paid_per_s(paid_url, [lane], 3600.0))
        finally:
            servers.stop_server(process)
        settled, claim_txs = _claim_all(chain, workdir)
        onchain = _transactions(chain, first_block, chain.block_number())
        say(
            f"{args.onchain_requests} vouchers on one channel, the claims of the run "
            f"({len(claim_txs)} transactions, {settled} atomic units settled): "
            f"{onchain} transactions from the deposit on"
        )

        process, url = _start("x402", stage.rpc_url, asset.address, stage.merchant, workdir)
        try:
            _, results["x402_sdk_channel_per_s"] = channel_rate(f"{url}/paid", "x402 SDK")
        finally:
            servers.stop_server(process)

    channel = results["channel_per_s"]
    report = {
        "bench": "channels",
        "unpaid_per_s": round(results["unpaid_per_s"], 1),
        "exact_per_s": round(results["exact_per_s"], 1),
        "channel_per_s": round(channel, 1),
        "x402_sdk_channel_per_s": round(results["x402_sdk_channel_per_s"], 1),
        "ratio_vs_exact": round(channel / results["exact_per_s"], 2),
        "ratio_vs_unpaid": round(channel / results["unpaid_per_s"], 2),
        "ratio_vs_x402_sdk": round(channel / results["x402_sdk_channel_per_s"], 2),
        "onchain_tx_per_10k": onchain,
        "onchain_requests": args.onchain_requests,
        "concurrency": args.concurrency,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    servers.serve_or_run(main, _serve)
