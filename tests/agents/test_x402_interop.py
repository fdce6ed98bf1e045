"""The agent's paying client pays servers it did not write: the x402 SDK's FastAPI middleware, and an x402 v1 seller.

Both run on anvil with real settlement. The SDK server uses the SDK's own
in-process facilitator (its web3 signer on anvil) and our token, declared with
its EIP-712 name and version as DESIGN §4 describes; the client must echo the
SDK's offer exactly for the SDK to accept it. The v1 seller answers with the
legacy JSON body and takes ``X-PAYMENT``; it verifies and settles with the
paywall's ``LocalFacilitator``. Balances move by the price and the agent's
books reconcile with the chain.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from farthing.agents.outcome import outcome_of
from farthing.agents.reservations import booked_payments
from farthing.paywall import LocalFacilitator
from farthing.paywall.wire import PaymentPayload, PaymentRequirements, b64_json
from farthing.wallet.chain import RpcChain
from farthing.wallet.eip3009 import Authorization
from tests.agents.conftest import World, make_world

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]

PRICE = 10_000


@pytest.fixture
def anvil_world(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[World]:
    made = make_world(anvil_chain, tmp_path)
    yield made
    made.close()


def sdk_server(world: World) -> FastAPI:
    from x402 import x402Facilitator, x402ResourceServer
    from x402.http.middleware.fastapi import payment_middleware
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact import ExactEvmServerScheme, register_exact_evm_facilitator

    key = world.chain.dev_accounts()[4].private_key.get_secret_value()
    signer = FacilitatorWeb3Signer(private_key=key, rpc_url=world.chain.rpc_url)
    facilitator = register_exact_evm_facilitator(
        x402Facilitator(), signer, networks=world.chain.network
    )
    server = x402ResourceServer(facilitator)
    server.register(world.chain.network, ExactEvmServerScheme())
    routes = {
        "GET /weather": {
            "accepts": {
                "scheme": "exact",
                "payTo": world.merchant,
                "price": {
                    "amount": str(PRICE),
                    "asset": world.asset.address,
                    "extra": {"name": world.asset.name, "version": world.asset.version},
                },
                "network": world.chain.network,
            },
            "description": "the weather",
        }
    }
    app = FastAPI()
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request: Any, call_next: Any) -> Any:
        return await middleware(request, call_next)

    @app.get("/weather")
    async def weather() -> dict[str, str]:
        return {"weather": "sunny"}

    return app


async def test_the_client_pays_an_x402_sdk_server(anvil_world: World) -> None:
    world = anvil_world
    async with world.client(app=sdk_server(world)) as http:
        response = await http.get("http://sdk.test/weather")
    assert response.status_code == 200, response.text
    assert response.json() == {"weather": "sunny"}
    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "paid", outcome
    assert world.token.balance_of(world.merchant) == PRICE
    (payment,) = booked_payments(world.books)
    assert payment.state == "posted" and payment.tx_hash == outcome.tx_hash
    assert world.reconcile().breaks == ()


def v1_seller(world: World) -> Starlette:
    """A legacy seller: requirements in a v1 JSON body, payment in X-PAYMENT."""
    facilitator = LocalFacilitator(world.chain, world.relayer)
    offer = {
        "scheme": "exact",
        "network": "local",  # v1 names networks; anvil is Farthing's `local`
        "maxAmountRequired": str(PRICE),
        "resource": "http://v1.test/report",
        "description": "a report",
        "mimeType": "text/plain",
        "payTo": world.merchant,
        "maxTimeoutSeconds": 60,
        "asset": world.asset.address,
        "extra": {"name": world.asset.name, "version": world.asset.version},
    }
    requirements = PaymentRequirements(
        network=world.chain.network,
        asset=world.asset.address,
        amount=PRICE,
        pay_to=world.merchant,
        max_timeout_seconds=60,
        token_name=world.asset.name,
        token_version=world.asset.version,
    )

    async def report(request: Request) -> Response:
        header = request.headers.get("x-payment")
        if header is None:
            body = {"x402Version": 1, "error": "X-PAYMENT header is required", "accepts": [offer]}
            return JSONResponse(body, status_code=402)
        data = json.loads(base64.b64decode(header))
        assert (data["x402Version"], data["scheme"], data["network"]) == (1, "exact", "local")
        payload = PaymentPayload(
            accepted=requirements,
            authorization=Authorization.from_wire(data["payload"]["authorization"]),
            signature=bytes.fromhex(data["payload"]["signature"][2:]),
        )
        verified = await facilitator.verify(payload, requirements)
        if not verified.valid:
            return JSONResponse(
                {"x402Version": 1, "error": verified.reason, "accepts": [offer]}, status_code=402
            )
        settled = await facilitator.settle(payload, requirements)
        receipt = {
            "success": settled.success,
            "transaction": settled.transaction,
            "network": "local",
            "payer": payload.payer,
        }
        return PlainTextResponse("the v1 report", headers={"X-PAYMENT-RESPONSE": b64_json(receipt)})

    return Starlette(routes=[Route("/report", report)])


async def test_the_client_pays_an_x402_v1_seller(anvil_world: World) -> None:
    world = anvil_world
    async with world.client(app=v1_seller(world)) as http:
        response = await http.get("http://v1.test/report")
    assert response.status_code == 200, response.text
    assert response.text == "the v1 report"
    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "paid", outcome
    assert world.token.balance_of(world.merchant) == PRICE
    assert world.reconcile().breaks == ()
