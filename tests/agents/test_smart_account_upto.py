"""Our paying agent pays ``upto`` from a counterfactual smart account: the settlement deploys it, the books post the charge.

On the memory chain and anvil, with our Permit2, proxy and Multicall3, the
agent's ``Payer`` holds a :class:`SmartAccountSigner` whose account is not
deployed (so it never approved Permit2). Our paywall offers ``upto`` with the
gas-sponsoring extensions; the agent signs its ceiling and an EIP-2612
permit, both ERC-6492-wrapped; our facilitator deploys the account through
Multicall3 and settles what the handler charged. The reservation is posted
at the charge, the rest released, and the chain moved exactly that.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.agents.client import async_paying_client
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Payer
from farthing.agents.settings import AgentSettings
from farthing.paywall import LocalFacilitator, PaidRoute, PaywallMiddleware, PaywallOptions
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import SmartAccountSigner, deploy_account_factory
from tests.agents.conftest import make_world
from tests.paywall.smart_accounts import place_multicall

FUNDS = 1_000_000
CEILING = 50_000
USED = 12_345


async def _metered(request: Request) -> Response:
    return JSONResponse({"tokens": 42}, headers={"Farthing-Charge": str(USED)})


def test_the_agent_pays_upto_from_a_counterfactual_account(chain: Chain, tmp_path: Path) -> None:
    place_upto_contracts(chain)
    place_multicall(chain)
    world = make_world(chain, tmp_path, funds=0)
    try:
        world.set_policy()  # no approval threshold: this test is about the wallet
        factory = deploy_account_factory(chain, sender=world.owner)
        account = SmartAccountSigner.on_chain(
            chain, LocalSigner.generate(), factory=factory, salt=os.urandom(32)
        )
        assert not account.deployed
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
        app = PaywallMiddleware(
            Starlette(routes=[Route("/meter", _metered)]),
            options=PaywallOptions(
                routes=[PaidRoute("/meter", CEILING, schemes=("upto",))],
                facilitator=LocalFacilitator(chain, world.relayer),
                store=world.store,
                pay_to=world.merchant,
                asset=world.asset,
            ),
        )

        async def fetch() -> httpx.Response:
            async with async_paying_client(
                payer, task_id="t", purpose="metered", transport=httpx.ASGITransport(app=app)
            ) as http:
                return await http.get("http://meter.test/meter")

        response = asyncio.run(fetch())
        assert response.status_code == 200, response.text
        outcome = outcome_of(response)
        assert outcome is not None and outcome.status == "paid", outcome
        assert outcome.amount == USED
        assert chain.code_at(account.address)
        assert world.token.balance_of(account.address) == FUNDS - USED
        assert world.token.balance_of(world.merchant) == USED
        status = world.books.status()
        assert (status.spent, status.reserved) == (USED, 0)
    finally:
        world.close()
