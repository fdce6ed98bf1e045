"""Fixtures for the agents' tests: a real chain, a real paywalled blog, real books. No mocks.

``make_world`` deploys a fresh stablecoin (so reconciliation sees only this
test's transfers), funds a fresh agent key by minting and books that mint as
the agent's funding, and serves ``farthing.agents.blog`` behind
``PaywallMiddleware`` with the in-process ``LocalFacilitator``. The agent's
books and the paywall's payment store are SQLite files in ``tmp_path``. The
``world`` fixture uses the session's memory chain; ``chain_world`` runs on the
memory chain and on anvil in turn.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from farthing.agents.blog import ARTICLES, Article, paywalled_blog
from farthing.agents.books import AgentBooks
from farthing.agents.client import async_paying_client
from farthing.agents.payer import Payer
from farthing.agents.policy import SpendPolicy
from farthing.agents.reservations import booked_payments
from farthing.agents.settings import AgentSettings
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import ReconciliationReport, reconcile
from farthing.paywall import LocalFacilitator, PaymentStore, PaywallMiddleware
from farthing.paywall.wire import b64_json
from farthing.wallet.chain import Chain, RpcChain
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.keystore import write_keystore
from farthing.wallet.money import Asset
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import TEST_PASSPHRASE, CliResult, DevChainProcess, cli_env, run_farthing
from tests.paywall.conftest import serve_in_thread

PRICE_ATOMIC = 13_850  # 0.1 CNY at 0.1385 USDC per CNY
BLOG = "http://blog.test"


@dataclass
class World:
    """A token on a chain, a paywalled blog, and an agent with books and a funded wallet."""

    chain: Chain
    asset: Asset
    token: Stablecoin
    owner: LocalSigner
    relayer: LocalSigner
    merchant: str
    agent: LocalSigner
    database: LedgerDatabase
    database_url: str
    books: AgentBooks
    payer: Payer
    store: PaymentStore
    app: PaywallMiddleware
    start_block: int
    tmp_path: Path

    def client(
        self,
        *,
        task_id: str | None = "task-1",
        purpose: str | None = "testing",
        max_price: int | None = None,
        app: Any = None,
    ) -> httpx.AsyncClient:
        """An async paying client talking to the blog in-process; use it with ``async with``."""
        return async_paying_client(
            self.payer,
            task_id=task_id,
            purpose=purpose,
            max_price=max_price,
            transport=httpx.ASGITransport(app=app or self.app),
        )

    def fund(self, amount: int, to: str | None = None, *, book: bool = True) -> None:
        minted = self.token.mint(to or self.agent.address, amount, sender=self.owner)
        assert minted.ok and minted.tx_hash and minted.block_number
        if book and (to is None or to == self.agent.address):
            result = self.books.book_funding(
                amount=amount,
                to_address=self.agent.address,
                tx_hash=minted.tx_hash,
                block_number=minted.block_number,
            )
            assert result.succeeded, result

    def set_policy(self, **limits: Any) -> None:
        self.books.set_policy(SpendPolicy(**limits))

    def reconcile(self, **kwargs: Any) -> ReconciliationReport:
        return reconcile(
            self.database,
            TokenChainView(self.chain, self.asset),
            from_block=self.start_block,
            **kwargs,
        )

    def open_reservations(self) -> list[int]:
        return [p.payment_id for p in booked_payments(self.books) if p.state == "reserved"]

    def posted_total(self) -> int:
        return sum(p.amount for p in booked_payments(self.books) if p.state == "posted")

    def close(self) -> None:
        self.store.dispose()
        self.database.dispose()


def make_world(
    chain: Chain,
    tmp_path: Path,
    *,
    funds: int = 1_000_000,
    settings: AgentSettings | None = None,
    articles: Sequence[Article] = ARTICLES,
    extra_pages: Mapping[str, str] | None = None,
    agent_id: str = "agent",
) -> World:
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[2].signer()
    start_block = chain.block_number() + 1
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    merchant = LocalSigner.generate().address
    agent = LocalSigner.generate()
    url = f"sqlite:///{tmp_path / 'agent.sqlite'}"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    books = AgentBooks(database, agent_id=agent_id, asset=asset).ensure()
    payer = Payer(
        signer=agent,
        chain=chain,
        asset=asset,
        books=books,
        settings=settings or AgentSettings(approval_poll_s=0.05, settle_retry_delay_s=0.05),
    )
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    app = paywalled_blog(
        facilitator=LocalFacilitator(chain, relayer),
        store=store,
        pay_to=merchant,
        asset=asset,
        articles=articles,
        extra_pages=extra_pages,
    )
    world = World(
        chain, asset, token, owner, relayer, merchant, agent, database, url, books, payer,
        store, app, start_block, tmp_path,
    )  # fmt: skip
    if funds:
        world.fund(funds)
    return world


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def world(memory_chain: Chain, tmp_path: Path) -> Iterator[World]:
    """A fresh world on the session's memory chain."""
    made = make_world(memory_chain, tmp_path)
    yield made
    made.close()


@pytest.fixture
def chain_world(chain: Chain, tmp_path: Path) -> Iterator[World]:
    """A fresh world on each backend in turn (memory, then anvil)."""
    made = make_world(chain, tmp_path)
    yield made
    made.close()


# ------------------------------------------------------------------ sellers that misbehave


def bad_sellers(chain_network: str, asset: Asset | None = None) -> Starlette:
    """Routes whose 402s no wallet here can pay, or cannot read at all.

    Given the ``asset`` agents hold, ``/fails-after-pay`` asks for a payment
    they can make and then answers every paid request with 500: the seller
    broke after the signed payment reached it.
    """

    def required(accepts: list[dict[str, Any]]) -> str:
        return b64_json({"x402Version": 2, "resource": {"url": "x"}, "accepts": accepts})

    entry = {
        "scheme": "exact",
        "amount": "10000",
        "payTo": "0x" + "5" * 40,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    headers = {
        "/unknown-network": required(
            [{**entry, "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "asset": "EPjFWdd5"}]
        ),
        "/unknown-asset": required([{**entry, "network": chain_network, "asset": "0x" + "7" * 40}]),
        "/malformed": "%%% this is not base64 %%%",
    }

    if asset is not None:
        payable = {**entry, "network": asset.network, "asset": asset.address}
        payable["extra"] = {"name": asset.name, "version": asset.version}
        headers["/fails-after-pay"] = required([payable])

    async def answer(request: Request) -> Response:
        if "PAYMENT-SIGNATURE" in request.headers:
            return JSONResponse({"error": "internal error"}, status_code=500)
        return JSONResponse(
            {"x402Version": 2, "error": "payment required"},
            status_code=402,
            headers={"PAYMENT-REQUIRED": headers["/" + request.url.path.rsplit("/", 1)[-1]]},
        )

    return Starlette(routes=[Route(path, answer) for path in headers])


def site_app(world_app: Any, chain_network: str, asset: Asset | None = None) -> Starlette:
    """The paywalled blog at /, the misbehaving sellers under /bad."""
    return Starlette(
        routes=[Mount("/bad", app=bad_sellers(chain_network, asset)), Mount("/", app=world_app)]
    )


# ------------------------------------------------------------------ the real command line


@dataclass
class Site:
    """`farthing chain dev` running, a funded agent keystore, and the blog served over HTTP."""

    data_dir: Path
    chain: RpcChain
    asset: Asset
    minter: LocalSigner
    agent: LocalSigner
    merchant: str
    url: str
    env: dict[str, str]

    def farthing(self, *args: str, timeout_s: float = 120) -> CliResult:
        return run_farthing(list(args), env=self.env, timeout_s=timeout_s)


@pytest.fixture
def site(dev_chain: DevChainProcess, tmp_path: Path) -> Iterator[Site]:
    data_dir = dev_chain.data_dir
    deployment = load_dev_deployment(data_dir)
    chain = RpcChain(deployment.rpc_url, timeout_s=5.0, receipt_timeout_s=30.0)
    wallet_settings = WalletSettings(data_dir=data_dir, scrypt_n=2**12)
    agent = LocalSigner.generate()
    write_keystore(wallet_settings, "default", agent, SecretStr(TEST_PASSPHRASE))
    minter = deployment.minter_signer()
    token = Stablecoin(chain, deployment.token)
    assert token.mint(agent.address, 1_000_000, sender=minter).ok  # 1 USDC
    merchant = LocalSigner.generate().address
    store = PaymentStore.sqlite(tmp_path / "site-paywall.sqlite")
    blog = paywalled_blog(
        facilitator=LocalFacilitator(chain, chain.dev_accounts()[3].signer()),
        store=store,
        pay_to=merchant,
        asset=deployment.token,
    )
    with serve_in_thread(site_app(blog, chain.network, deployment.token)) as url:
        yield Site(
            data_dir, chain, deployment.token, minter, agent, merchant, url, cli_env(data_dir)
        )
    store.dispose()
    chain.close()
