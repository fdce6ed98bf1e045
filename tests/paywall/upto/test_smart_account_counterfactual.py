"""A counterfactual smart account pays ``upto``: the settlement deploys it, then charges the actual amount; hostile factories are refused.

On the memory chain and anvil, with our Permit2, proxy and Multicall3, a
SmartAccount not deployed yet (so without any Permit2 approval) signs its
ceiling and an EIP-2612 permit for Permit2 with :class:`SmartAccountSigner`,
both ERC-6492-wrapped. Through ``PaywallMiddleware`` and a real
``LocalFacilitator`` the route's handler runs and the charge it names is
settled: the facilitator deploys the account through Multicall3 (the
factory's caller, never the relayer's key), then settles with the inner
signatures; the charge alone moves from the account. A wrapper whose factory
call burns gas, writes state and deploys nothing, or deploys another owner's
account, is refused at verify and at settle, with nothing sent, deployed,
moved or kept.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.paywall.schemes.upto import types as codes
from farthing.paywall.schemes.upto.client import (
    payment_header,
    permit2_allowance,
    sign_eip2612_permit,
    token_nonce,
    upto_payment,
)
from farthing.paywall.schemes.upto.facilitator import DEPLOY_GAS_MAX
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements, parse_requirements
from farthing.wallet.erc6492 import Wrapped, unwrap, wrap
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    create_account_calldata,
    deploy_account_factory,
)
from tests.paywall.smart_accounts import COUNTING_FACTORY, GAS_BURNER, contract_at, place_multicall
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv

USED = 2_345


async def _metered(request: Request) -> Response:
    return JSONResponse({"tokens": 42}, headers={"Farthing-Charge": str(USED)})


@pytest.fixture
def site(upto_env: UptoEnv, tmp_path: Path) -> Iterator[PaywallMiddleware]:
    place_multicall(upto_env.chain)
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    yield PaywallMiddleware(
        Starlette(routes=[Route("/chat", _metered)]),
        options=PaywallOptions(
            routes=[PaidRoute("/chat", CEILING, schemes=("upto",))],
            facilitator=LocalFacilitator(upto_env.chain, upto_env.relayer),
            store=store,
            pay_to=upto_env.payee.address,
            asset=upto_env.asset,
        ),
    )
    store.dispose()


def _get(app: Any, header: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
            return await client.get(
                "/chat", headers={"PAYMENT-SIGNATURE": header} if header else {}
            )

    return asyncio.run(go())


def _offer(app: Any) -> UptoRequirements:
    challenge = json.loads(base64.b64decode(_get(app).headers["PAYMENT-REQUIRED"]))
    (entry,) = [a for a in challenge["accepts"] if a["scheme"] == "upto"]
    offer = parse_requirements(entry)
    assert isinstance(offer, UptoRequirements)
    return offer


def _unborn(env: UptoEnv) -> SmartAccountSigner:
    factory = deploy_account_factory(env.chain, sender=env.owner)
    account = SmartAccountSigner.on_chain(
        env.chain, LocalSigner.generate(), factory=factory, salt=os.urandom(32)
    )
    assert not account.deployed and not env.chain.code_at(account.address)
    assert env.token.mint(account.address, FUNDS, sender=env.owner).ok
    return account


def _payment(env: UptoEnv, account: SmartAccountSigner, offer: UptoRequirements) -> UptoPayment:
    permit = sign_eip2612_permit(
        account,
        offer,
        nonce=token_nonce(env.chain, env.asset.address, account.address),
        deadline=env.chain.timestamp() + 300,
    )
    return upto_payment(offer, account, now=env.chain.timestamp(), eip2612=permit)


def _sent(env: UptoEnv) -> int:
    return int(env.chain.w3.eth.get_transaction_count(env.relayer.address))


def test_a_counterfactual_account_pays_upto_and_the_settlement_deploys_it(
    upto_env: UptoEnv, site: PaywallMiddleware
) -> None:
    env = upto_env
    account = _unborn(env)
    payment = _payment(env, account, _offer(site))
    assert isinstance(unwrap(payment.signature), Wrapped)
    assert payment.eip2612 is not None and unwrap(payment.eip2612.signature) is not None
    sent = _sent(env)
    response = _get(site, payment_header(payment))
    assert response.status_code == 200, response.text
    settlement = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))
    assert settlement["success"] and settlement["amount"] == str(USED)
    # Two transactions from the relayer: the deployment (to Multicall3), then the settlement.
    assert _sent(env) == sent + 2
    settled_in = env.chain.w3.eth.get_transaction(settlement["transaction"])["blockNumber"]
    deployed_in = env.chain.w3.eth.get_block(settled_in - 1, full_transactions=True)
    (deployment,) = deployed_in["transactions"]
    assert (deployment["from"], deployment["to"]) == (env.relayer.address, MULTICALL3_ADDRESS)
    assert int(deployment["gas"]) <= DEPLOY_GAS_MAX
    assert env.chain.code_at(account.address)
    assert env.token.balance_of(account.address) == FUNDS - USED
    assert env.balance(env.payee) == USED
    assert permit2_allowance(env.chain, env.asset.address, account.address) == CEILING - USED
    # The same header again: the permit's nonce is spent, nothing moves.
    again = _get(site, payment_header(payment))
    assert again.status_code == 402
    assert env.token.balance_of(account.address) == FUNDS - USED


@pytest.mark.parametrize("factory_kind", ["gas_burner", "counting", "another_owner"])
def test_a_hostile_upto_factory_is_refused_with_nothing_sent_or_kept(
    upto_env: UptoEnv, site: PaywallMiddleware, factory_kind: str
) -> None:
    env = upto_env
    account = _unborn(env)
    if factory_kind == "gas_burner":
        factory, calldata = contract_at(env.chain, GAS_BURNER), b"\x01"
    elif factory_kind == "counting":
        factory, calldata = contract_at(env.chain, COUNTING_FACTORY), b"\x01"
    else:  # the real factory, deploying an account of another owner
        factory = account.factory
        calldata = create_account_calldata(LocalSigner.generate().address, account.salt)
    offer = _offer(site)
    good = _payment(env, account, offer)
    assert good.eip2612 is not None

    def hostile(signature: bytes) -> bytes:
        return wrap(factory, calldata, account.owner_signature(signature))

    payment = replace(
        good,
        signature=hostile(good.signature),
        eip2612=replace(good.eip2612, signature=hostile(good.eip2612.signature)),
    )
    sent = _sent(env)
    facilitator = LocalFacilitator(env.chain, env.relayer).upto
    verdict = facilitator.verify(payment, offer)
    assert not verdict.valid and verdict.reason == codes.ERR_INVALID_SIGNATURE
    settled = facilitator.settle(payment, offer.charging(USED))
    assert not settled.success and settled.reason == codes.ERR_INVALID_SIGNATURE
    response = _get(site, payment_header(payment))
    assert response.status_code == 402
    assert _sent(env) == sent
    assert not env.chain.code_at(account.address)
    assert env.token.balance_of(account.address) == FUNDS and env.balance(env.payee) == 0
    if factory_kind == "counting":
        assert int.from_bytes(env.chain.w3.eth.get_storage_at(factory, 0), "big") == 0
