"""Fixtures for discovery: a token on the session's memory chain, and a facilitator with a catalog.

Everything is real: py-evm in this process, our Stablecoin contract, the
``LocalFacilitator`` settling on it, the facilitator's HTTP app over
``httpx.ASGITransport`` with its catalog in a SQLite file. Payments are signed
with Farthing's wallet; what a buyer echoes of a 402 (``resource`` and
``extensions``) is added to the payload the way an x402 client sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall import LocalFacilitator
from farthing.paywall.discovery import Catalog, RouteDiscovery, declare_http
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.wire import PaymentRequirements, unb64_json
from farthing.wallet.chain import Chain
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.paywall.conftest import run, sign_for

PRICE_ATOMIC = 10_000


@dataclass
class Market:
    """A token, its minter, a relayer, and payers minted on demand."""

    chain: Chain
    asset: Asset
    token: Stablecoin
    owner: LocalSigner
    relayer: LocalSigner

    def payer(self, funds: int = 1_000_000) -> LocalSigner:
        signer = LocalSigner.generate()
        if funds:
            assert self.token.mint(signer.address, funds, sender=self.owner).ok
        return signer

    def requirements(self, pay_to: str, amount: int = PRICE_ATOMIC) -> PaymentRequirements:
        return PaymentRequirements(
            network=self.chain.network,
            asset=self.asset.address,
            amount=amount,
            pay_to=pay_to,
            max_timeout_seconds=300,
            token_name=self.asset.name,
            token_version=self.asset.version,
        )

    def body(
        self,
        *,
        url: str = "https://weather.example/api/weather",
        pay_to: str | None = None,
        amount: int = PRICE_ATOMIC,
        declaration: Any = None,
        resource: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A verify/settle body paying ``amount`` for ``url``, echoing its declaration."""
        requirements = self.requirements(pay_to or LocalSigner.generate().address, amount)
        payload: dict[str, Any] = unb64_json(sign_for(requirements.to_wire(), self.payer()))
        payload["resource"] = {"url": url, "description": "Weather for a city", **(resource or {})}
        if declaration is None:
            declaration = declare_http("GET", RouteDiscovery(input_example={"city": "Paris"}))
        payload["extensions"] = {"bazaar": declaration}
        return {
            "x402Version": 2,
            "paymentPayload": payload,
            "paymentRequirements": requirements.to_wire(),
        }


@pytest.fixture(scope="module")
def market(memory_chain: Chain) -> Market:
    accounts = memory_chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[4].signer()
    asset = deploy_stablecoin(memory_chain, sender=owner)
    token = Stablecoin(memory_chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    return Market(memory_chain, asset, token, owner, relayer)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog.sqlite(tmp_path / "facilitator.sqlite")
    yield opened
    opened.dispose()


def facilitator_for(market: Market, catalog: Catalog | None) -> Any:
    return facilitator_app(LocalFacilitator(market.chain, market.relayer), catalog=catalog)


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to an ASGI app (its background work done before this returns)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f") as client:
            return await client.request(method, path, **kwargs)

    response: httpx.Response = run(go())
    return response
