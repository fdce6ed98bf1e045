"""Fixtures for the paywall tests: a real anvil per module, our token, and a paywalled app.

Everything is real: anvil from npm, the Stablecoin contract, a SQLite file for
the payment store, Starlette apps driven through ``httpx.ASGITransport`` or a
real uvicorn on 127.0.0.1. Payers sign with Farthing's wallet; the official
x402 clients appear in their own test modules.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from farthing.devchain.node import AnvilNode, start_anvil
from farthing.paywall import (
    LocalFacilitator,
    PaidRoute,
    PaymentStore,
    PaywallMiddleware,
    PaywallOptions,
)
from farthing.paywall.records.books import RevenueBook
from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequirements,
    encode_payment_signature,
    unb64_json,
)
from farthing.wallet.chain import RpcChain
from farthing.wallet.eip3009 import (
    Authorization,
    build_authorization,
    sign_authorization,
    typed_data,
)
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import anvil_missing_reason

PAYER_FUNDS = 50_000_000  # 50 USDC
PRICE = "0.01 USDC"
PRICE_ATOMIC = 10_000

ARTICLE = (
    "<html><body><article><h1>The farthing</h1>\n"
    "<p>The farthing was a quarter of a penny, the smallest coin in common use.</p>\n"
    "<p>It was minted in silver first and in copper later, for centuries.</p>\n"
    "<p>PAID-PART: the coin stopped being legal tender at the end of 1960.</p>\n"
    "<p>PAID-PART: collectors still trade them, a few pence each.</p>\n"
    "</article></body></html>"
)


@dataclass
class ChainEnv:
    """A module's anvil with our token and named actors (fresh keys or anvil's dev keys)."""

    node: AnvilNode
    chain: RpcChain
    asset: Asset
    token: Stablecoin
    owner: LocalSigner
    relayer: LocalSigner
    merchant: str
    payers: list[LocalSigner] = field(default_factory=list)

    def new_payer(self, funds: int = PAYER_FUNDS) -> LocalSigner:
        signer = LocalSigner.generate()
        if funds:
            assert self.token.mint(signer.address, funds, sender=self.owner).ok
        self.payers.append(signer)
        return signer

    def facilitator(self, **options: Any) -> LocalFacilitator:
        return LocalFacilitator(self.chain, self.relayer, **options)


def deploy_env(node: AnvilNode) -> ChainEnv:
    chain = node.chain(timeout_s=5.0, receipt_timeout_s=30.0)
    accounts = [a.signer() for a in chain.dev_accounts()[:4]]
    owner, relayer = accounts[0], accounts[3]
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    merchant = LocalSigner.generate().address
    return ChainEnv(node, chain, asset, token, owner, relayer, merchant)


@pytest.fixture(scope="module")
def chain_env() -> Iterator[ChainEnv]:
    """An anvil of this module's own (its clock and mining mode are the module's to change)."""
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        env = deploy_env(node)
        yield env
        env.chain.close()


# ------------------------------------------------------------------ paying


def challenge_of(response: httpx.Response) -> dict[str, Any]:
    """The decoded PAYMENT-REQUIRED header of a 402."""
    header = response.headers.get("payment-required")
    assert header, f"no PAYMENT-REQUIRED on a {response.status_code}"
    decoded: dict[str, Any] = unb64_json(header)
    return decoded


def sign_for(
    accepts: dict[str, Any],
    payer: LocalSigner,
    *,
    signer: LocalSigner | None = None,
    **overrides: Any,
) -> str:
    """A PAYMENT-SIGNATURE header paying ``accepts``; ``overrides`` bend the authorization."""
    requirements = PaymentRequirements.from_wire(accepts)
    fields: dict[str, Any] = {
        "from_address": payer.address,
        "to": requirements.pay_to,
        "value": requirements.amount,
        "valid_for_s": 120,
    }
    fields.update(overrides)
    authorization = build_authorization(**fields)
    return header_for(authorization, requirements, signer or payer)


def header_for(
    authorization: Authorization, requirements: PaymentRequirements, signer: LocalSigner
) -> str:
    domain = requirements.domain()
    if signer.address == authorization.from_address:
        signed = sign_authorization(signer, authorization, domain)
        signature = signed.signature
    else:  # a wrong signer: skip the wallet's own post-signing check
        signature = signer.sign_typed_data(*typed_data(authorization, domain))
    payload = PaymentPayload(
        accepted=requirements, authorization=authorization, signature=signature
    )
    return encode_payment_signature(payload)


# ------------------------------------------------------------------ the app


async def _article(request: Request) -> Response:
    return HTMLResponse(ARTICLE)


async def _data(request: Request) -> Response:
    return JSONResponse({"secret": "paid-data", "n": request.query_params.get("n")})


async def _boom(request: Request) -> Response:
    raise RuntimeError("the handler failed")


async def _missing(request: Request) -> Response:
    return JSONResponse({"error": "no such thing"}, status_code=404)


async def _free(request: Request) -> Response:
    return PlainTextResponse("free")


def inner_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/articles/{slug}", _article),
            Route("/api/data", _data, methods=["GET", "POST"]),
            Route("/api/boom", _boom),
            Route("/api/missing", _missing),
            Route("/free", _free),
        ]
    )


def default_routes() -> list[PaidRoute]:
    return [
        PaidRoute(
            "/articles/*",
            PRICE,
            description="an article",
            mime_type="text/html",
            preview_fraction=Decimal("0.4"),
        ),
        PaidRoute("/api/**", PRICE, methods=("GET", "POST"), description="data"),
    ]


def paywalled(
    env: ChainEnv,
    store: PaymentStore,
    *,
    routes: list[PaidRoute] | None = None,
    facilitator: Any = None,
    books: RevenueBook | None = None,
    **options: Any,
) -> PaywallMiddleware:
    return PaywallMiddleware(
        inner_app(),
        options=PaywallOptions(
            routes=routes if routes is not None else default_routes(),
            facilitator=facilitator or env.facilitator(),
            store=store,
            books=books,
            pay_to=env.merchant,
            asset=env.asset,
            **options,
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PaymentStore]:
    payments = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    yield payments
    payments.dispose()


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://paywall.test", timeout=30.0
    )


# ------------------------------------------------------------------ real servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, *, port: int | None = None) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 in a background thread; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
