"""A counterfactual smart account opens a ``batch-settlement`` channel: its deposit deploys it; hostile factories are refused.

On anvil, through Farthing's channel paywall (ASGI) and our facilitator, a
SmartAccount not deployed yet signs its deposit's ReceiveWithAuthorization
with an ERC-6492 wrapper (the client part, as the agent uses it) and names
its owner key as ``payerAuthorizer``. The facilitator verifies the wrapper by
simulation and sends one Multicall3 ``aggregate3`` (the factory called by
Multicall3, then the escrow's ``deposit`` with the inner signature): the
account exists after it, the deposit is in escrow, vouchers are paid, a
top-up still wrapped after the deployment is read for its inner signature,
and the deposit replayed moves nothing. A wrapper whose factory call burns
gas, writes state and deploys nothing, or deploys another owner's account,
is refused before the relayer sends anything, and nothing it did is kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import Any

import pytest

from farthing.paywall import PaymentStore
from farthing.paywall.schemes.batch_settlement import client
from farthing.paywall.schemes.batch_settlement.payers import DEPOSIT_DEPLOY_GAS_MAX
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, ChannelDomain
from farthing.paywall.schemes.batch_settlement.wire import Erc3009Deposit
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.paywall.wire import unb64_json
from farthing.wallet.erc6492 import wrap
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import SmartAccountSigner, create_account_calldata
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
from tests.paywall.smart_accounts import (
    COUNTING_FACTORY,
    GAS_BURNER,
    Accounts,
    accounts_on,
    contract_at,
)
from tests.paywall.test_channel_paywall import _app, channel_store_fixture

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]

FUNDS = 1_000_000
P = PRICE_ATOMIC
URL = "http://paywall.test/api/data"


@pytest.fixture(scope="module")
def accounts(chain_env: ChainEnv) -> Accounts:
    return accounts_on(chain_env.chain, chain_env.owner)


class _Buyer:
    """The scheme's client part paying one channel from ``account`` (its owner key signs vouchers)."""

    def __init__(self, env: ChainEnv, account: SmartAccountSigner, accepts: dict[str, Any]):
        extra = client.read_offer(accepts["extra"])
        assert not isinstance(extra, client.OfferRefusal)
        self.env, self.account, self.accepts = env, account, accepts
        self.domain = ChannelDomain(env.chain.chain_id)
        self.config: ChannelConfig = client.channel_config(
            payer=account.address,
            receiver=accepts["payTo"],
            token=accepts["asset"],
            extra=extra,
            salt=secrets.token_bytes(32),
            payer_authorizer=client.voucher_signer(account).address,
        )
        self.channel_id = client.channel_id_of(self.domain, self.config)

    def deposit(self, deposit_id: int, amount: int) -> Erc3009Deposit:
        authorization = client.deposit_authorization(
            payer=self.account.address,
            collector=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
            channel_id=self.channel_id,
            deposit_id=deposit_id,
            value=amount,
            now=self.env.chain.timestamp(),
            valid_for_s=600,
            max_timeout_seconds=int(self.accepts["maxTimeoutSeconds"]),
        )
        return client.sign_deposit(
            self.account, self.env.asset, self.channel_id, authorization, deposit_id
        )

    def header(
        self, cumulative: int, deposit: Erc3009Deposit | None = None, amount: int = 0
    ) -> dict[str, str]:
        payload = client.voucher_payload(
            self.account, self.domain, self.config, self.channel_id, cumulative,
            deposit=deposit, deposit_amount=amount,
        )  # fmt: skip
        name, value = client.payment_header(payload, accepted=self.accepts, resource=None, url=URL)
        return {name: value}


def _error(response: Any) -> str:
    return str(unb64_json(response.headers["payment-required"])["error"])


async def _offer(http: Any) -> dict[str, Any]:
    offered = await http.get("/api/data")
    challenge = unb64_json(offered.headers["payment-required"])
    (accepts,) = [a for a in challenge["accepts"] if a["scheme"] == "batch-settlement"]
    return dict(accepts)


def _relayer_sent(env: ChainEnv) -> int:
    return int(env.chain.w3.eth.get_transaction_count(env.relayer.address))


def test_a_counterfactual_account_opens_a_channel_its_deposit_deploys(
    chain_env: ChainEnv, accounts: Accounts, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env = chain_env
    account = accounts.new(deployed=False)
    assert not account.deployed and not env.chain.code_at(account.address)
    assert env.token.mint(account.address, FUNDS, sender=env.owner).ok
    app = _app(env, store, channel_store, LocalSigner.generate())

    async def go() -> None:
        async with asgi_client(app) as http:
            buyer = _Buyer(env, account, await _offer(http))
            deposit = buyer.deposit(1, 10 * P)
            first = buyer.header(P, deposit, 10 * P)
            opened = await http.get("/api/data", headers=first)
            assert opened.status_code == 200, opened.text
            settled = unb64_json(opened.headers["payment-response"])
            tx = env.chain.w3.eth.get_transaction(settled["transaction"])
            # One transaction from the relayer to Multicall3: the factory, then the deposit.
            assert (tx["from"], tx["to"]) == (env.relayer.address, MULTICALL3_ADDRESS)
            assert int(tx["gas"]) <= DEPOSIT_DEPLOY_GAS_MAX
            assert env.chain.code_at(account.address)
            for n in (2, 3):
                paid = await http.get("/api/data", headers=buyer.header(n * P))
                assert paid.status_code == 200, paid.text
            # The opening deposit replayed: refused, nothing sent, nothing moved.
            sent, balance = _relayer_sent(env), env.token.balance_of(account.address)
            replayed = await http.get("/api/data", headers=first)
            assert replayed.status_code == 402
            assert (_relayer_sent(env), env.token.balance_of(account.address)) == (sent, balance)
            # A top-up the signer still wraps (it was not told the account exists):
            # the wrapper is read for its inner signature; nothing is deployed again.
            assert not account.deployed
            topped = await http.get(
                "/api/data", headers=buyer.header(4 * P, buyer.deposit(2, 10 * P), 10 * P)
            )
            assert topped.status_code == 200, topped.text

    asyncio.run(go())
    assert env.token.balance_of(account.address) == FUNDS - 20 * P
    (record,) = [r for r in channel_store.records() if r.config.payer == account.address]
    assert (record.charged, record.balance) == (4 * P, 20 * P)


@pytest.mark.parametrize("factory_kind", ["gas_burner", "counting", "another_owner"])
def test_a_hostile_deposit_factory_is_refused_with_nothing_sent_or_kept(
    chain_env: ChainEnv,
    accounts: Accounts,
    store: PaymentStore,
    channel_store: ChannelStore,
    factory_kind: str,
) -> None:
    env = chain_env
    account = accounts.new(deployed=False)
    assert env.token.mint(account.address, FUNDS, sender=env.owner).ok
    if factory_kind == "gas_burner":
        factory, calldata = contract_at(env.chain, GAS_BURNER), b"\x01"
    elif factory_kind == "counting":
        factory, calldata = contract_at(env.chain, COUNTING_FACTORY), b"\x01"
    else:  # the real factory, deploying an account of another owner
        factory = accounts.factory
        calldata = create_account_calldata(LocalSigner.generate().address, account.salt)
    app = _app(env, store, channel_store, LocalSigner.generate())

    async def go() -> None:
        async with asgi_client(app) as http:
            buyer = _Buyer(env, account, await _offer(http))
            deposit = buyer.deposit(1, 10 * P)
            inner = account.owner_signature(deposit.signature)
            hostile = dataclasses.replace(deposit, signature=wrap(factory, calldata, inner))
            sent = _relayer_sent(env)
            refused = await http.get("/api/data", headers=buyer.header(P, hostile, 10 * P))
            assert refused.status_code == 402
            assert _error(refused) == "invalid_batch_settlement_evm_receive_authorization_signature"
            assert _relayer_sent(env) == sent

    asyncio.run(go())
    assert not env.chain.code_at(account.address)
    assert env.token.balance_of(account.address) == FUNDS
    if factory_kind == "counting":
        assert int.from_bytes(env.chain.w3.eth.get_storage_at(factory, 0), "big") == 0
    assert [r for r in channel_store.records() if r.config.payer == account.address] == []
