"""The server loses its channel state and recovers it from the chain; the payer keeps paying.

Real anvil, our contracts, our middleware on uvicorn, and the x402 SDK's
batch-settlement client with an RPC-reading signer (it recovers from the
chain on a corrective 402 without a ``voucherState``). The payer deposits
once and pays; we claim part of it; the server then starts over on an empty
payment database. The payer's next voucher is ahead of what the chain says:
the server rebuilds the channel from the chain (``charged = totalClaimed``),
answers the corrective 402, the client resyncs and every request is served,
with no second deposit. What the server lost (vouchers never claimed) is
forfeited as the spec says; everything else claims and settles exactly.

A second test: a voucher arrives before its deposit (our row caches "no
balance"), the deposit then lands on chain without us; the next voucher
re-reads the chain instead of being refused ``channel_not_found``.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC

from farthing.paywall import PaymentStore
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    deposit_nonce,
    erc3009_collector_data,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client, serve_in_thread
from tests.paywall.test_channel_paywall import _app, _Channel, channel_store_fixture

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]  # the fixture, shared with test_channel_paywall


def _fresh_store(env: ChainEnv, path: Path) -> ChannelStore:
    return ChannelStore(
        f"sqlite:///{path}",
        domain=ChannelDomain(env.chain.chain_id),
        network=env.chain.network,
        escrow=ChannelEscrow(env.chain),
    )


def _rpc_sdk_client(env: ChainEnv, payer: LocalSigner) -> x402Client:
    account = Account.from_key(payer.private_key.get_secret_value())
    signer = EthAccountSignerWithRPC(account, env.chain.rpc_url or "")
    client = x402Client()
    policy = BatchSettlementDepositPolicy(deposit_multiplier=50)
    client.register(env.chain.network, BatchSettlementEvmScheme(signer, policy))
    client.set_spend_controls(
        {"allowed_assets": [{"network": env.chain.network, "asset": env.asset.address}]}
    )
    return client


def test_a_payer_keeps_paying_after_the_server_loses_its_channel_state(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore, tmp_path: Path
) -> None:
    env, payer, authorizer = chain_env, chain_env.new_payer(), LocalSigner.generate()
    p, deposit = PRICE_ATOMIC, 50 * PRICE_ATOMIC
    client = _rpc_sdk_client(env, payer)  # one client: its channel state outlives the server's
    first_app = _app(env, store, channel_store, authorizer)
    lost = _fresh_store(env, tmp_path / "after-loss.sqlite")
    second_app = _app(env, PaymentStore(f"sqlite:///{tmp_path / 'p2.sqlite'}"), lost, authorizer)
    block_before = env.chain.block_number()

    async def pay(url: str, n: int) -> list[httpx.Response]:
        async with x402HttpxClient(client, timeout=30.0) as http:
            return [await http.get(f"{url}/api/data") for _ in range(n)]

    with serve_in_thread(first_app) as url:
        before = asyncio.run(pay(url, 5))
    assert [r.status_code for r in before] == [200] * 5
    assert env.chain.block_number() - block_before == 1  # the deposit
    (record,) = channel_store.records()
    cid = record.channel_id
    assert first_app.channels is not None
    report = asyncio.run(first_app.channels.claimer.tick(force=True))
    assert report.failures == () and report.claimed == {"0x" + cid.hex(): 5 * p}

    with serve_in_thread(first_app) as url:
        unclaimed = asyncio.run(pay(url, 2))  # 7p signed; the server will lose the last 2p
    assert [r.status_code for r in unclaimed] == [200, 200]
    blocks_after_claim = env.chain.block_number()

    # The server starts over on an empty database: the client is 2p ahead of the chain.
    with serve_in_thread(second_app) as url:
        after = asyncio.run(pay(url, 3))
    for n, response in enumerate(after, start=1):
        assert response.status_code == 200, response.text
        state = unb64_json(response.headers["payment-response"])["extra"]["channelState"]
        assert state["chargedCumulativeAmount"] == str((5 + n) * p)
    assert env.chain.block_number() == blocks_after_claim  # no second deposit, nothing sent
    (rebuilt,) = lost.records()
    assert rebuilt.channel_id == cid and rebuilt.charged == 8 * p and rebuilt.balance == deposit

    assert second_app.channels is not None
    merchant_before = env.token.balance_of(env.merchant)
    report = asyncio.run(second_app.channels.claimer.tick(force=True))
    assert report.failures == () and report.claimed == {"0x" + cid.hex(): 3 * p}
    escrow = ChannelEscrow(env.chain)
    assert escrow.channel(cid) == (deposit, 8 * p)
    assert env.token.balance_of(env.merchant) - merchant_before == 3 * p
    assert env.token.balance_of(payer.address) == 50_000_000 - deposit  # the rest is refundable
    lost.dispose()


def test_a_deposit_made_elsewhere_is_found_on_the_chain(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer = chain_env, LocalSigner.generate()
    ch = _Channel(env, authorizer)
    app = _app(env, store, channel_store, authorizer)
    p = PRICE_ATOMIC

    async def go() -> None:
        async with asgi_client(app) as http:
            early = await http.get("/api/data", headers=ch.header(ch.voucher(p)))
            assert early.status_code == 402
            record = channel_store.get(ch.id)
            assert record is not None and record.balance == 0  # cached, and fresh

            salt = secrets.randbits(256)
            auth = build_authorization(
                from_address=ch.payer.address,
                to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
                value=100 * p,
                valid_for_s=3600,
                now=env.chain.timestamp(),
                nonce=deposit_nonce(ch.id, salt),
            )
            signed = sign_receive_authorization(ch.payer, auth, TokenDomain.for_asset(env.asset))
            data = erc3009_collector_data(
                auth.valid_after, auth.valid_before, salt, signed.signature
            )
            escrow = ChannelEscrow(env.chain)
            collector = CANONICAL_CHANNEL_CONTRACTS.erc3009_collector
            assert escrow.deposit(ch.config, 100 * p, collector, data, sender=env.relayer).ok

            paid = await http.get("/api/data", headers=ch.header(ch.voucher(p)))
            assert paid.status_code == 200, paid.text
            again = await http.get("/api/data", headers=ch.header(ch.voucher(2 * p)))
            assert again.status_code == 200, again.text

    asyncio.run(go())
    record = channel_store.get(ch.id)
    assert record is not None and record.charged == 2 * p and record.balance == 100 * p
