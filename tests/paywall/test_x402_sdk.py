"""The official x402 Python SDK pays our paywall, and its server accepts payments through our facilitator.

Both directions are real: anvil, uvicorn on 127.0.0.1, and the SDK's own
``x402HttpxClient`` with its exact-EVM client scheme, our token listed in its
spend controls (DESIGN §4). In the second test the SDK's FastAPI middleware
uses ``farthing facilitator serve``, started as a real process, as its
facilitator URL. On-chain balances must move by exactly the price.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from x402 import x402Client, x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.clients import x402HttpxClient
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm.exact import ExactEvmClientScheme, ExactEvmServerScheme

from farthing.paywall import PaymentState, PaymentStore, RemoteFacilitator
from farthing.paywall.wire import unb64_json
from tests import zygote
from tests.conftest import cli_env
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, paywalled, serve_in_thread

pytestmark = pytest.mark.anvil


def sdk_client(env: ChainEnv, payer: Any) -> x402Client:
    client = x402Client()
    client.register(env.chain.network, ExactEvmClientScheme(payer))
    # Our token is not one of the SDK's default assets: allow it explicitly.
    client.set_spend_controls(
        {"allowed_assets": [{"network": env.chain.network, "asset": env.asset.address}]}
    )
    return client


def test_the_sdk_client_pays_our_middleware(chain_env: ChainEnv, store: PaymentStore) -> None:
    payer = chain_env.new_payer()
    merchant_before = chain_env.token.balance_of(chain_env.merchant)

    async def go(url: str) -> httpx.Response:
        async with x402HttpxClient(sdk_client(chain_env, payer), timeout=30.0) as http:
            return await http.get(f"{url}/api/data?n=1")

    with serve_in_thread(paywalled(chain_env, store)) as url:
        response = asyncio.run(go(url))
    assert response.status_code == 200, response.text
    assert response.json()["secret"] == "paid-data"
    receipt = unb64_json(response.headers["payment-response"])
    assert receipt["success"] is True and receipt["payer"] == payer.address
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    assert [r.state for r in store.records()] == [PaymentState.SETTLED]


@pytest.fixture
def facilitator_process(chain_env: ChainEnv, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``farthing facilitator serve`` as a real process, settling as anvil dev account 5."""
    key_file = tmp_path / "relayer.key"
    key_file.write_text(chain_env.chain.dev_accounts()[5].private_key.get_secret_value() + "\n")
    os.chmod(key_file, 0o600)
    token_file = tmp_path / "token"
    token_file.write_text("a-bearer-token-for-tests-only\n")
    os.chmod(token_file, 0o600)
    process = zygote.spawn(
        [
            sys.executable, "-m", "farthing", "facilitator", "serve", "--json",
            "--rpc-url", chain_env.chain.rpc_url or "", "--key-file", str(key_file),
            "--host", "127.0.0.1", "--port", "0", "--token-file", str(token_file),
            "--asset", chain_env.asset.address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path / "data"),
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"facilitator did not start: {process.communicate(timeout=10)[1]}")
    info: dict[str, Any] = json.loads(line)
    info["token"] = "a-bearer-token-for-tests-only"
    info["key"] = chain_env.chain.dev_accounts()[5].private_key.get_secret_value()
    try:
        yield info
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
        info["output"] = out + err


def sdk_server_app(env: ChainEnv, facilitator_url: str, token: str) -> FastAPI:
    facilitator = HTTPFacilitatorClient(
        FacilitatorConfig(url=facilitator_url, auth_provider=_Bearer(token))
    )
    server = x402ResourceServer(facilitator)
    server.register(env.chain.network, ExactEvmServerScheme())
    routes = {
        "GET /weather": {
            "accepts": {
                "scheme": "exact",
                "payTo": env.merchant,
                "price": {
                    "amount": str(PRICE_ATOMIC),
                    "asset": env.asset.address,
                    "extra": {"name": env.asset.name, "version": env.asset.version},
                },
                "network": env.chain.network,
            },
            "description": "the weather",
        }
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await facilitator.aclose()  # its httpx client lives on the server's loop

    app = FastAPI(lifespan=lifespan)
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request: Any, call_next: Any) -> Any:
        return await middleware(request, call_next)

    @app.get("/weather")
    async def weather() -> dict[str, str]:
        return {"weather": "sunny"}

    return app


class _Bearer:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_auth_headers(self) -> Any:
        from x402.http.facilitator_client_base import AuthHeaders

        bearer = {"Authorization": f"Bearer {self.token}"}
        return AuthHeaders(verify=bearer, settle=bearer, supported=bearer)


def test_an_sdk_server_settles_through_farthing_facilitator_serve(
    chain_env: ChainEnv, facilitator_process: dict[str, Any]
) -> None:
    payer = chain_env.new_payer()
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    app = sdk_server_app(chain_env, facilitator_process["url"], facilitator_process["token"])

    async def go(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with x402HttpxClient(sdk_client(chain_env, payer), timeout=30.0) as http:
            paid = await http.get(f"{url}/weather")
        async with httpx.AsyncClient(timeout=10.0) as plain:
            supported = await plain.get(
                f"{facilitator_process['url']}/supported",
                headers={"Authorization": f"Bearer {facilitator_process['token']}"},
            )
        return paid, supported

    with serve_in_thread(app) as url:
        paid, supported = asyncio.run(go(url))
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"weather": "sunny"}
    receipt = unb64_json(paid.headers["payment-response"])
    assert receipt["success"] is True and receipt["transaction"].startswith("0x")
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    kinds = [k for k in supported.json()["kinds"] if k["scheme"] == "exact"]
    assert kinds == [{"x402Version": 2, "scheme": "exact", "network": chain_env.chain.network}]
    assert facilitator_process["network"] == chain_env.chain.network


def test_our_middleware_settles_through_the_facilitator_process(
    chain_env: ChainEnv, store: PaymentStore, facilitator_process: dict[str, Any]
) -> None:
    payer = chain_env.new_payer()
    remote = RemoteFacilitator(facilitator_process["url"], token=facilitator_process["token"])
    merchant_before = chain_env.token.balance_of(chain_env.merchant)

    async def go(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with x402HttpxClient(sdk_client(chain_env, payer), timeout=30.0) as http:
            paid = await http.get(f"{url}/api/data")
        async with httpx.AsyncClient(timeout=10.0) as plain:
            anonymous = await plain.post(f"{facilitator_process['url']}/verify", json={})
        await remote.aclose()
        return paid, anonymous

    with serve_in_thread(paywalled(chain_env, store, facilitator=remote)) as url:
        paid, anonymous = asyncio.run(go(url))
    assert paid.status_code == 200, paid.text
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC
    assert anonymous.status_code == 401
    assert facilitator_process["key"][2:] not in facilitator_process.get("output", "")
