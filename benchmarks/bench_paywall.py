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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
PRICE_ATOMIC = 10_000


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

        async def paid(request: Any) -> JSONResponse:
            return JSONResponse({"data": "paid content"})

        app = PaywallMiddleware(
            Starlette(routes=[Route("/paid", paid)]),
            options=PaywallOptions(
                routes=[PaidRoute("/paid", PRICE_ATOMIC)],
                facilitator=LocalFacilitator(chain, accounts[3].signer()),
                store=PaymentStore.sqlite(Path(workdir) / "payments.sqlite"),
                pay_to=merchant,
                asset=asset,
            ),
        )
    else:
        from fastapi import FastAPI
        from x402 import x402Facilitator, x402ResourceServer
        from x402.http.middleware.fastapi import payment_middleware
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
        price = {
            "amount": str(PRICE_ATOMIC),
            "asset": asset.address,
            "extra": {"name": asset.name, "version": asset.version},
        }
        routes = {
            "GET /paid": {
                "accepts": {
                    "scheme": "exact",
                    "payTo": merchant,
                    "price": price,
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


# ---------------------------------------------------------------- the load


async def _unpaid(url: str, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.get(url)
            assert response.status_code == 402, response.status_code
            done += 1

    async with httpx.AsyncClient(
        timeout=30.0, limits=httpx.Limits(max_connections=concurrency)
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def _paid(url: str, headers: list[str], concurrency: int, seconds_max: float) -> float:
    queue = list(headers)
    done = 0
    deadline = time.perf_counter() + seconds_max

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while queue and time.perf_counter() < deadline:
            header = queue.pop()
            response = await client.get(url, headers={"PAYMENT-SIGNATURE": header})
            assert response.status_code == 200, (response.status_code, response.text[:200])
            done += 1

    async with httpx.AsyncClient(
        timeout=60.0, limits=httpx.Limits(max_connections=concurrency)
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def _headers(accepts: dict[str, Any], payer: Any, count: int) -> list[str]:
    from farthing.paywall.wire import PaymentPayload, PaymentRequirements, encode_payment_signature
    from farthing.wallet.eip3009 import build_authorization, sign_authorization

    requirements = PaymentRequirements.from_wire(accepts)
    out = []
    for _ in range(count):
        auth = build_authorization(
            from_address=payer.address,
            to=requirements.pay_to,
            value=requirements.amount,
            valid_for_s=requirements.max_timeout_seconds,  # the longest the paywall accepts
        )
        signed = sign_authorization(payer, auth, requirements.domain())
        payload = PaymentPayload(
            accepted=requirements, authorization=auth, signature=signed.signature
        )
        out.append(encode_payment_signature(payload))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paid", type=int, default=120, help="paid requests per server")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="unpaid phase length")
    parser.add_argument("--paid-seconds-max", type=float, default=15.0)
    args = parser.parse_args()

    from farthing.devchain.node import start_anvil
    from farthing.paywall.wire import unb64_json
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

    with start_anvil() as node, tempfile.TemporaryDirectory(prefix="bench-paywall-") as workdir:
        chain = node.chain(receipt_timeout_s=30.0)
        owner = chain.dev_accounts()[0].signer()
        asset = deploy_stablecoin(chain, sender=owner)
        token = Stablecoin(chain, asset)
        assert token.configure_minter(owner.address, sender=owner).ok
        payer = LocalSigner.generate()
        assert token.mint(payer.address, 10_000 * 10**6, sender=owner).ok
        merchant = LocalSigner.generate().address
        results: dict[str, float] = {}
        for kind in ("ours", "x402"):
            process, url = _start(kind, node.rpc_url, asset.address, merchant, workdir)
            try:
                challenge = httpx.get(f"{url}/paid", timeout=30.0)
                accepts = unb64_json(challenge.headers["payment-required"])["accepts"][0]
                headers = _headers(accepts, payer, args.paid)
                if kind == "ours":
                    results["unpaid_per_s"] = asyncio.run(
                        _unpaid(f"{url}/paid", args.seconds, args.concurrency)
                    )
                paid = asyncio.run(
                    _paid(f"{url}/paid", headers, args.concurrency, args.paid_seconds_max)
                )
                results["paid_per_s" if kind == "ours" else "x402_sdk_paid_per_s"] = paid
            finally:
                _stop(process)
            print(
                f"{kind}: {json.dumps({k: round(v, 1) for k, v in results.items()})}",
                file=sys.stderr,
            )
        settled = token.balance_of(merchant) // PRICE_ATOMIC
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
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(REPO))
        _serve(*sys.argv[2:7])
    else:
        main()
