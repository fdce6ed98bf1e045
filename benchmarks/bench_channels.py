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
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
PRICE_ATOMIC = 1_000
WITHDRAW_DELAY_S = 900
RECEIVER_AUTHORIZER = 5  # anvil dev account index: our server's receiver authorizer
SDK_AUTHORIZER = 6
OUR_RELAYER = 3
SDK_RELAYER = 4


# ---------------------------------------------------------------- the servers


def _serve(kind: str, rpc_url: str, token: str, merchant: str, workdir: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from farthing.paywall.facilitator.cli import bind_socket, serve_app
    from farthing.wallet.chain import RpcChain
    from farthing.wallet.token import read_asset

    chain = RpcChain(rpc_url, timeout_s=10.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, token)
    accounts = chain.dev_accounts()
    app: Any
    if kind == "ours":
        from farthing.paywall import (
            LocalFacilitator,
            PaidRoute,
            PaymentStore,
            PaywallMiddleware,
            PaywallOptions,
        )
        from farthing.paywall.schemes.batch_settlement.server import ChannelOptions

        async def paid(request: Any) -> JSONResponse:
            return JSONResponse({"data": "paid content"})

        app = PaywallMiddleware(
            Starlette(routes=[Route("/paid", paid)]),
            options=PaywallOptions(
                routes=[PaidRoute("/paid", PRICE_ATOMIC, schemes=("exact", "batch-settlement"))],
                facilitator=LocalFacilitator(chain, accounts[OUR_RELAYER].signer()),
                store=PaymentStore.sqlite(Path(workdir) / "payments.sqlite"),
                pay_to=merchant,
                asset=asset,
                channels=ChannelOptions(
                    _channel_store(chain, workdir),
                    accounts[RECEIVER_AUTHORIZER].signer(),
                    withdraw_delay_s=WITHDRAW_DELAY_S,
                    claim_in_background=False,
                ),
            ),
        )
    else:
        from fastapi import FastAPI
        from x402 import x402Facilitator, x402ResourceServer
        from x402.http.middleware.fastapi import payment_middleware
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
        routes = {
            "GET /paid": {
                "accepts": {
                    "scheme": "batch-settlement",
                    "payTo": merchant,
                    "price": {
                        "amount": str(PRICE_ATOMIC),
                        "asset": asset.address,
                        "extra": {"name": asset.name, "version": asset.version},
                    },
                    "network": chain.network,
                }
            }
        }
        app = FastAPI()
        middleware = payment_middleware(routes, server)

        @app.middleware("http")
        async def x402(request: Any, call_next: Any) -> Any:
            return await middleware(request, call_next)

        @app.get("/paid")
        async def paid_route() -> dict[str, str]:
            return {"data": "paid content"}

    sock = bind_socket("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    print(json.dumps({"url": f"http://{host}:{port}"}), flush=True)
    serve_app(app, sock)


def _channel_store(chain: Any, workdir: str) -> Any:
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore
    from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain

    return ChannelStore(
        f"sqlite:///{Path(workdir) / 'payments.sqlite'}",
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )


def _start(
    kind: str, rpc_url: str, token: str, merchant: str, workdir: str
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, rpc_url, token, merchant, workdir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"{kind} server did not start: {process.communicate(timeout=10)[1]}")
    return process, json.loads(line)["url"]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


# ---------------------------------------------------------------- the client's payloads


def _offer(url: str, scheme: str) -> dict[str, Any]:
    from farthing.paywall.wire import unb64_json

    challenge = httpx.get(url, timeout=30.0)
    assert challenge.status_code == 402, challenge.status_code
    accepts = unb64_json(challenge.headers["payment-required"])["accepts"]
    (offer,) = [a for a in accepts if a["scheme"] == scheme]
    return dict(offer)


def _exact_headers(offer: dict[str, Any], payer: Any, count: int) -> list[str]:
    from farthing.paywall.wire import PaymentPayload, PaymentRequirements, encode_payment_signature
    from farthing.wallet.eip3009 import build_authorization, sign_authorization

    requirements = PaymentRequirements.from_wire(offer)
    out = []
    for _ in range(count):
        auth = build_authorization(
            from_address=payer.address,
            to=requirements.pay_to,
            value=requirements.amount,
            valid_for_s=requirements.max_timeout_seconds,
        )
        signed = sign_authorization(payer, auth, requirements.domain())
        payload = PaymentPayload(
            accepted=requirements, authorization=auth, signature=signed.signature
        )
        out.append(encode_payment_signature(payload))
    return out


def _channel_headers(
    chain: Any, asset: Any, offer: dict[str, Any], payer: Any, count: int
) -> list[str]:
    """One new channel: a deposit covering ``count`` requests with the first voucher, then vouchers."""
    from farthing.paywall.schemes.batch_settlement.vouchers import (
        ChannelConfig,
        ChannelDomain,
        deposit_nonce,
        sign_voucher,
    )
    from farthing.paywall.wire import b64_json
    from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
    from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS

    price, extra = int(offer["amount"]), offer["extra"]
    domain = ChannelDomain(chain.chain_id)
    config = ChannelConfig(
        payer=payer.address,
        payer_authorizer=payer.address,
        receiver=offer["payTo"],
        receiver_authorizer=extra["receiverAuthorizer"],
        token=offer["asset"],
        withdraw_delay_s=int(extra["withdrawDelay"]),
        salt=secrets.token_bytes(32),
    )
    channel_id = domain.channel_id(config)
    config_wire = config.to_wire()

    def wrap(payload: dict[str, Any]) -> str:
        # Compact JSON, as every x402 client encodes the header (ours and the SDK's).
        return b64_json({"x402Version": 2, "payload": payload, "accepted": offer})

    headers = []
    for n in range(1, count + 1):
        voucher = sign_voucher(payer, domain, channel_id, n * price)
        payload: dict[str, Any] = {
            "type": "voucher",
            "channelConfig": config_wire,
            "voucher": voucher.to_wire(),
        }
        if n == 1:
            salt = secrets.randbits(256)
            auth = build_authorization(
                from_address=payer.address,
                to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
                value=count * price,
                valid_for_s=3600,
                now=chain.timestamp(),
                nonce=deposit_nonce(channel_id, salt),
            )
            signed = sign_receive_authorization(payer, auth, TokenDomain.for_asset(asset))
            payload["type"] = "deposit"
            payload["deposit"] = {
                "amount": str(count * price),
                "authorization": {
                    "erc3009Authorization": {
                        "validAfter": str(auth.valid_after),
                        "validBefore": str(auth.valid_before),
                        "salt": "0x" + salt.to_bytes(32, "big").hex(),
                        "signature": "0x" + signed.signature.hex(),
                    }
                },
            }
        headers.append(wrap(payload))
    return headers


# ---------------------------------------------------------------- the load


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


async def _unpaid(url: str, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.get(url)
            assert response.status_code == 402, response.status_code
            done += 1

    async with httpx.AsyncClient(timeout=30.0, limits=_limits(concurrency)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def _paid(url: str, lanes: list[list[str]], seconds_max: float) -> float:
    """Each lane's headers in order (a channel's vouchers must be), the lanes side by side."""
    done = 0
    deadline = time.perf_counter() + seconds_max

    async def worker(client: httpx.AsyncClient, lane: list[str]) -> None:
        nonlocal done
        for header in lane:
            if time.perf_counter() >= deadline:
                return
            response = await client.get(url, headers={"PAYMENT-SIGNATURE": header})
            assert response.status_code == 200, (response.status_code, response.text[:300])
            done += 1

    async with httpx.AsyncClient(timeout=60.0, limits=_limits(len(lanes))) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client, lane) for lane in lanes))
        return done / (time.perf_counter() - started)


def _transactions(chain: Any, first: int, last: int) -> int:
    eth = chain.w3.eth
    return sum(int(eth.get_block_transaction_count(n)) for n in range(first, last + 1))


def _claim_all(chain: Any, workdir: str) -> tuple[int, tuple[str, ...]]:
    """Our merchant's one claim and one settle (what ``farthing paywall claim`` does)."""
    from farthing.paywall import LocalFacilitator
    from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer

    accounts = chain.dev_accounts()
    store = _channel_store(chain, workdir)
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
    parser.add_argument("--concurrency", type=int, default=8, help="workers (one channel each)")
    parser.add_argument("--seconds", type=float, default=3.0, help="unpaid phase length")
    parser.add_argument("--paid-seconds-max", type=float, default=60.0)
    parser.add_argument(
        "--onchain-requests", type=int, default=10_000, help="vouchers on one channel, counted"
    )
    args = parser.parse_args()
    if min(args.exact, args.channel, args.concurrency, args.onchain_requests) < 1:
        parser.error("every count must be at least 1")

    from farthing.devchain.node import start_anvil
    from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    per_lane = -(-args.channel // args.concurrency)
    with start_anvil() as node, tempfile.TemporaryDirectory(prefix="bench-channels-") as workdir:
        chain = node.chain(receipt_timeout_s=30.0)
        owner = chain.dev_accounts()[0].signer()
        asset = deploy_stablecoin(chain, sender=owner)
        token = Stablecoin(chain, asset)
        assert token.configure_minter(owner.address, sender=owner).ok
        place_channel_contracts(chain)
        payer = LocalSigner.generate()
        assert token.mint(payer.address, 10**12, sender=owner).ok
        merchant = LocalSigner.generate().address
        results: dict[str, float] = {}

        process, url = _start("ours", node.rpc_url, asset.address, merchant, workdir)
        try:
            paid_url = f"{url}/paid"
            results["unpaid_per_s"] = asyncio.run(_unpaid(paid_url, args.seconds, args.concurrency))
            say(f"unpaid: {results['unpaid_per_s']:.1f}/s")
            exact = _exact_headers(_offer(paid_url, "exact"), payer, args.exact)
            lanes = [exact[n :: args.concurrency] for n in range(args.concurrency)]
            results["exact_per_s"] = asyncio.run(_paid(paid_url, lanes, args.paid_seconds_max))
            say(f"exact: {results['exact_per_s']:.1f}/s")
            offer = _offer(paid_url, "batch-settlement")
            lanes = [
                _channel_headers(chain, asset, offer, payer, per_lane)
                for _ in range(args.concurrency)
            ]
            results["channel_per_s"] = asyncio.run(_paid(paid_url, lanes, args.paid_seconds_max))
            say(f"batch-settlement (ours): {results['channel_per_s']:.1f}/s")

            # One payer, one channel: every transaction from the deposit to the settle.
            (lane,) = [_channel_headers(chain, asset, offer, payer, args.onchain_requests)]
            first_block = chain.block_number() + 1
            asyncio.run(_paid(paid_url, [lane], 3600.0))
        finally:
            _stop(process)
        settled, claim_txs = _claim_all(chain, workdir)
        onchain = _transactions(chain, first_block, chain.block_number())
        say(
            f"{args.onchain_requests} vouchers on one channel, the claims of the run "
            f"({len(claim_txs)} transactions, {settled} atomic units settled): "
            f"{onchain} transactions from the deposit on"
        )

        process, url = _start("x402", node.rpc_url, asset.address, merchant, workdir)
        try:
            paid_url = f"{url}/paid"
            offer = _offer(paid_url, "batch-settlement")
            lanes = [
                _channel_headers(chain, asset, offer, payer, per_lane)
                for _ in range(args.concurrency)
            ]
            results["x402_sdk_channel_per_s"] = asyncio.run(
                _paid(paid_url, lanes, args.paid_seconds_max)
            )
            say(f"batch-settlement (x402 SDK): {results['x402_sdk_channel_per_s']:.1f}/s")
        finally:
            _stop(process)

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
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(REPO))
        _serve(*sys.argv[2:7])
    else:
        main()
