"""Our paying agent pays ``exact`` from a smart account: reserved, signed by the owner for the account, settled, posted.

On the memory chain and anvil, the agent's ``Payer`` is given a
:class:`SmartAccountSigner` (its address is the account; deployed, or
counterfactual with its ERC-6492 signature) and buys a post from the
paywalled blog through its httpx paying client over ASGI, with our
facilitator. The reservation is posted at the price, the account paid the
merchant exactly that on chain (deploying the counterfactual account in the
same transaction).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from farthing.agents.client import async_paying_client
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Payer
from farthing.agents.reservations import booked_payments
from farthing.agents.settings import AgentSettings
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    deploy_account,
    deploy_account_factory,
)
from tests.agents.conftest import BLOG, PRICE_ATOMIC, make_world
from tests.paywall.smart_accounts import place_multicall

FUNDS = 1_000_000


@pytest.mark.parametrize("deployed", [True, False], ids=["erc1271", "erc6492"])
def test_the_agent_pays_from_a_smart_account(chain: Chain, tmp_path: Path, deployed: bool) -> None:
    world = make_world(chain, tmp_path, funds=0)
    try:
        place_multicall(chain)
        factory = deploy_account_factory(chain, sender=world.owner)
        owner, salt = LocalSigner.generate(), os.urandom(32)
        if deployed:
            deploy_account(chain, factory, owner.address, salt, sender=world.owner)
        account = SmartAccountSigner.on_chain(chain, owner, factory=factory, salt=salt)
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
            signer=account,
            chain=chain,
            asset=world.asset,
            books=world.books,
            settings=AgentSettings(approval_poll_s=0.05, settle_retry_delay_s=0.05),
        )

        async def fetch() -> object:
            async with async_paying_client(
                payer, task_id="t", purpose="read", transport=httpx.ASGITransport(app=world.app)
            ) as http:
                return await http.get(f"{BLOG}/posts/quarter-penny")

        response = asyncio.run(fetch())
        outcome = outcome_of(response)  # type: ignore[arg-type]
        assert outcome is not None and outcome.status == "paid", outcome
        (posted,) = booked_payments(world.books)
        assert (posted.state, posted.amount) == ("posted", PRICE_ATOMIC)
        assert chain.code_at(account.address)
        assert world.token.balance_of(account.address) == FUNDS - PRICE_ATOMIC
        assert world.token.balance_of(world.merchant) == PRICE_ATOMIC
    finally:
        world.close()
