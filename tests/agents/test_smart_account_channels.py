"""Our paying agent pays ``batch-settlement`` channels from a smart account, through our paywall on anvil.

The agent's ``Payer`` is given a :class:`SmartAccountSigner` (deployed, or
counterfactual with its ERC-6492 signature) and buys from Farthing's own
channel seller (``PaywallMiddleware`` with ``ChannelOptions``, our
facilitator, our contracts at the canonical addresses) many times over ASGI.
The channel names the account as payer and its owner key as
``payerAuthorizer``: the deposit is the account's (ERC-1271, or for a
counterfactual account ERC-6492, the account deployed by the deposit's own
transaction), every voucher the owner's ECDSA. The agent's books post each
charge, the receiver authorizer's claim moves exactly that from the escrow.
Losing the agent's channel rows, it finds the channel on chain (cold start)
and resyncs from the seller's corrective 402, whose ``voucherState`` is
signed by the owner key, not the account: no second deposit, nothing charged
twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.agents.books import AgentBooks
from farthing.agents.channels.store import list_channels
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Payer
from farthing.agents.settings import AgentSettings
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import LocalFacilitator, PaidRoute, PaywallMiddleware, PaywallOptions
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow, VoucherClaim
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    ClaimEntry,
    place_channel_contracts,
    sign_claim_batch,
)
from farthing.wallet.chain import RpcChain, TxResult
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    deploy_account,
    deploy_account_factory,
)
from tests.agents.conftest import World, make_world
from tests.paywall.smart_accounts import place_multicall

pytestmark = [pytest.mark.anvil, pytest.mark.anyio]

PRICE = 1_000
FUNDS = 1_000_000
BUYS = 6
SETTINGS = AgentSettings(
    approval_poll_s=0.05,
    settle_retry_delay_s=0.05,
    channel_deposit_multiple=20,
    channel_wait_s=5,
)


async def _article(request: Request) -> Response:
    return JSONResponse({"article": request.path_params["slug"]})


class _Seller:
    """Farthing's own channel seller on the world's chain, its receiver authorizer ours to claim with."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        chain = world.chain
        self.authorizer = LocalSigner.generate()
        self.channels = ChannelStore(
            f"sqlite:///{tmp_path / 'seller.sqlite'}",
            domain=ChannelDomain(chain.chain_id),
            network=chain.network,
            escrow=ChannelEscrow(chain),
        )
        inner = Starlette(routes=[Route("/articles/{slug}", _article)])
        self.app = PaywallMiddleware(
            inner,
            options=PaywallOptions(
                routes=[PaidRoute("/articles/*", PRICE, schemes=("batch-settlement",))],
                facilitator=LocalFacilitator(chain, world.relayer),
                store=world.store,
                pay_to=world.merchant,
                asset=world.asset,
                channels=ChannelOptions(
                    self.channels,
                    self.authorizer,
                    withdraw_delay_s=900,
                    claim_in_background=False,
                ),
            ),
        )


@pytest.fixture
def anvil_world(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[World]:
    place_channel_contracts(anvil_chain)
    place_multicall(anvil_chain)
    made = make_world(anvil_chain, tmp_path, funds=0, settings=SETTINGS)
    yield made
    made.close()


def _smart_payer(world: World, *, deployed: bool) -> tuple[Payer, SmartAccountSigner, TxResult]:
    chain = world.chain
    factory = deploy_account_factory(chain, sender=world.owner)
    owner, salt = LocalSigner.generate(), os.urandom(32)
    if deployed:
        deploy_account(chain, factory, owner.address, salt, sender=world.owner)
    account = SmartAccountSigner.on_chain(chain, owner, factory=factory, salt=salt)
    assert account.deployed is deployed
    minted = world.token.mint(account.address, FUNDS, sender=world.owner)
    assert minted.ok and minted.tx_hash and minted.block_number
    booked = world.books.book_funding(
        amount=FUNDS,
        to_address=account.address,
        tx_hash=minted.tx_hash,
        block_number=minted.block_number,
    )
    assert booked.succeeded, booked
    payer = Payer(
        signer=account, chain=chain, asset=world.asset, books=world.books, settings=SETTINGS
    )
    return payer, account, minted


def _fresh_books(world: World, path: Path, account: str, minted: TxResult) -> AgentBooks:
    """The same agent's books after its database was lost: only the account's funding is booked again."""
    database = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{path}"))
    upgrade_database(database)
    books = AgentBooks(database, agent_id="agent", asset=world.asset).ensure()
    assert minted.tx_hash and minted.block_number
    booked = books.book_funding(
        amount=FUNDS, to_address=account, tx_hash=minted.tx_hash, block_number=minted.block_number
    )
    assert booked.succeeded, booked
    return books


def _client(payer: Payer, app: PaywallMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        auth=payer.auth(task_id="t", purpose="reading", expected_buys=50),
        transport=httpx.ASGITransport(app=app),
        timeout=30,
    )


async def _buy(http: httpx.AsyncClient, slug: str) -> None:
    response = await http.get(f"http://seller.test/articles/{slug}")
    assert response.status_code == 200, (response.text, outcome_of(response))
    assert response.json() == {"article": slug}
    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "paid", outcome
    assert outcome.amount == PRICE


@pytest.mark.parametrize("deployed", [True, False], ids=["erc1271", "erc6492"])
async def test_the_agent_pays_channels_from_a_smart_account(
    anvil_world: World, tmp_path: Path, deployed: bool
) -> None:
    world = anvil_world
    seller = _Seller(world, tmp_path)
    payer, account, minted = _smart_payer(world, deployed=deployed)
    lost: AgentBooks | None = None
    try:
        async with _client(payer, seller.app) as http:
            for n in range(BUYS):
                await _buy(http, str(n))
        # The deposit deployed a counterfactual account in its own transaction.
        assert world.chain.code_at(account.address)
        (channel,) = list_channels(world.books)
        config = channel.config
        assert (config.payer, config.payer_authorizer) == (account.address, account.owner)
        deposit = 20 * PRICE
        assert (channel.status, channel.balance, channel.charged) == ("open", deposit, BUYS * PRICE)
        assert world.token.balance_of(account.address) == FUNDS - deposit
        status = world.books.status()
        assert (status.spent, status.reserved) == (BUYS * PRICE, 0)
        # The seller's record: every voucher the owner key's, charged once each.
        (record,) = seller.channels.records()
        assert record.charged == BUYS * PRICE and record.config == config

        # Cold start: the agent's database is lost (its channel rows and its
        # charges). A fresh book for the same agent finds the channel on chain
        # (nothing claimed yet), signs from zero, gets the seller's corrective
        # 402 and adopts its charge only because the owner key signed it.
        books = lost = _fresh_books(world, tmp_path / "again.sqlite", account.address, minted)
        again = Payer(
            signer=account, chain=world.chain, asset=world.asset, books=books, settings=SETTINGS
        )
        async with _client(again, seller.app) as http:
            await _buy(http, "after")
        (after,) = list_channels(books)
        assert after.channel_id == channel.channel_id
        assert (after.charged, after.balance) == ((BUYS + 1) * PRICE, deposit)
        assert (books.status().spent, books.status().reserved) == ((BUYS + 1) * PRICE, 0)
        assert world.token.balance_of(account.address) == FUNDS - deposit  # no second deposit

        # The receiver authorizer claims what was charged; the escrow checks the owner's voucher.
        (record,) = seller.channels.records()
        assert record.charged == (BUYS + 1) * PRICE
        claim = VoucherClaim(
            record.config, record.signed_max, record.signature or b"", record.charged
        )
        entry = ClaimEntry(record.channel_id, record.signed_max, record.charged)
        signature = sign_claim_batch(seller.authorizer, seller.channels.domain, [entry])
        escrow = ChannelEscrow(world.chain)
        assert escrow.claim_with_signature([claim], signature, sender=world.relayer).ok
        assert escrow.channel(record.channel_id) == (deposit, (BUYS + 1) * PRICE)
        assert escrow.settle(world.merchant, world.asset.address, sender=world.relayer).ok
        assert world.token.balance_of(world.merchant) == (BUYS + 1) * PRICE
    finally:
        seller.channels.dispose()
        if lost is not None:
            lost.database.dispose()


@pytest.fixture
def own_world(anvil: object, tmp_path: Path) -> Iterator[World]:
    """A world on an anvil of its own: the withdrawal moves the chain's clock."""
    from farthing.devchain.node import start_anvil

    with start_anvil() as node:
        chain = node.chain()
        place_channel_contracts(chain)
        place_multicall(chain)
        made = make_world(chain, tmp_path, funds=0, settings=SETTINGS)
        yield made
        made.close()
        chain.close()


async def test_a_smart_account_withdraws_its_channel_through_its_owner_key(
    own_world: World, tmp_path: Path
) -> None:
    """The escrow's withdrawal calls are sent by the payerAuthorizer (the owner key, which pays the gas);
    the unclaimed balance goes back to the account."""
    from farthing.agents.channels.payer import ChannelPayer
    from farthing.agents.channels.withdraw import finish_withdrawal, start_withdrawal
    from farthing.wallet.chain import Call

    world = own_world
    seller = _Seller(world, tmp_path)
    payer, account, _ = _smart_payer(world, deployed=True)
    try:
        async with _client(payer, seller.app) as http:
            for n in range(2):
                await _buy(http, str(n))
        (channel,) = list_channels(world.books)
        deposit = 20 * PRICE
        funder = world.chain.dev_accounts()[1].signer()
        assert world.chain.send(Call(account.owner, b"", value=10**17), sender=funder).ok
        channels = ChannelPayer(payer)
        assert start_withdrawal(channels, channel.channel_id) == "ok"
        world.chain.advance_time(channel.config.withdraw_delay_s + 1)
        result, returned = finish_withdrawal(channels, channel.channel_id)
        assert (result, returned) == ("ok", deposit)  # nothing was claimed: all of it comes back
        assert world.token.balance_of(account.address) == FUNDS
    finally:
        seller.channels.dispose()
