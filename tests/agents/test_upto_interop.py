"""The agent pays an x402 SDK ``upto`` server whose facilitator is ``farthing facilitator serve``, for what was used.

All real on anvil: our Permit2 and x402UptoPermit2Proxy at the canonical
addresses, ``farthing facilitator serve`` started as a process (it lists
``upto`` in ``/supported`` with its ``facilitatorAddress``, which the SDK's
server copies into the offer), the SDK's FastAPI middleware with its
``UptoEvmServerScheme``, and a handler that settles less than the ceiling
through the SDK's ``set_settlement_overrides``. The agent's paying client
signs the ceiling; the chain must move exactly the usage, the books post
exactly that and release the rest, and reconcile with the chain.
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
from fastapi import FastAPI, Response

from farthing.agents.client import async_paying_client
from farthing.agents.outcome import outcome_of
from farthing.agents.reservations import booked_payments
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.wire import unb64_json
from farthing.wallet.chain import RpcChain
from tests import zygote
from tests.agents.conftest import World, make_world
from tests.agents.upto_seller import approve_permit2
from tests.conftest import cli_env
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anvil

CEILING = 30_000
USED = 4_321
TOKEN = "a-bearer-token-for-tests-only"


@pytest.fixture
def anvil_world(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[World]:
    place_upto_contracts(anvil_chain)
    made = make_world(anvil_chain, tmp_path)
    made.set_policy()
    approve_permit2(made.chain, made.token, made.agent, 2**256 - 1)
    yield made
    made.close()


@pytest.fixture
def facilitator(anvil_world: World, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``farthing facilitator serve`` as a real process, settling as anvil dev account 5."""
    chain = anvil_world.chain
    key_file = tmp_path / "relayer.key"
    key_file.write_text(chain.dev_accounts()[5].private_key.get_secret_value() + "\n")
    os.chmod(key_file, 0o600)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    process = zygote.spawn(
        [
            sys.executable, "-m", "farthing", "facilitator", "serve", "--json",
            "--rpc-url", chain.rpc_url or "", "--key-file", str(key_file),
            "--host", "127.0.0.1", "--port", "0", "--token-file", str(token_file),
            "--asset", anvil_world.asset.address,
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
    try:
        yield info
    finally:
        process.terminate()
        process.communicate(timeout=15)


class _Bearer:
    def get_auth_headers(self) -> Any:
        from x402.http.facilitator_client_base import AuthHeaders

        bearer = {"Authorization": f"Bearer {TOKEN}"}
        return AuthHeaders(verify=bearer, settle=bearer, supported=bearer)


def sdk_upto_server(world: World, facilitator_url: str) -> FastAPI:
    """The SDK's seller: its middleware, its upto server scheme, our facilitator by URL."""
    from x402 import x402ResourceServer
    from x402.http import FacilitatorConfig, HTTPFacilitatorClient
    from x402.http.middleware.fastapi import payment_middleware, set_settlement_overrides
    from x402.mechanisms.evm.upto import UptoEvmServerScheme

    client = HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url, auth_provider=_Bearer()))
    server = x402ResourceServer(client)
    server.register(world.chain.network, UptoEvmServerScheme())
    routes = {
        "GET /meter": {
            "accepts": {
                "scheme": "upto",
                "payTo": world.merchant,
                "price": {
                    "amount": str(CEILING),
                    "asset": world.asset.address,
                    "extra": {"name": world.asset.name, "version": world.asset.version},
                },
                "network": world.chain.network,
            },
            "description": "metered",
        }
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()  # its httpx client lives on the server's loop

    app = FastAPI(lifespan=lifespan)
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request: Any, call_next: Any) -> Any:
        return await middleware(request, call_next)

    @app.get("/meter")
    async def meter(response: Response) -> dict[str, int]:
        set_settlement_overrides(response, {"amount": str(USED)})
        return {"used": USED}

    return app


def test_the_agent_pays_an_sdk_upto_server_through_farthing_facilitator_serve(
    anvil_world: World, facilitator: dict[str, Any]
) -> None:
    world = anvil_world
    before = world.token.balance_of(world.agent.address)
    app = sdk_upto_server(world, facilitator["url"])

    async def go(url: str) -> httpx.Response:
        async with async_paying_client(world.payer, task_id="task-1") as http:
            return await http.get(f"{url}/meter")

    with serve_in_thread(app) as url:
        response = asyncio.run(go(url))
    assert response.status_code == 200, response.text
    assert response.json() == {"used": USED}
    receipt = unb64_json(response.headers["payment-response"])
    assert receipt["success"] is True and receipt["amount"] == str(USED)
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.amount) == ("paid", USED), outcome
    assert outcome.tx_hash == receipt["transaction"]
    assert world.token.balance_of(world.agent.address) == before - USED
    assert world.token.balance_of(world.merchant) == USED
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", USED)
    assert world.books.status("task-1").reserved == 0
    assert world.reconcile().breaks == ()
