"""A channel deposit whose voucher would be refused never reaches the chain: the relayer sends nothing, the payer's authorization is not spent, and the client gets the corrective 402.

All real: anvil with our escrow placed, a SQLite channel store, the
middleware in front of a Starlette app (ASGI transport), and our own
signing. A top-up deposit on a channel we know, carrying a replayed or a
too-high voucher, is refused with ``cumulative_amount_mismatch`` and the
channel's state, and no block is mined; the right top-up still lands. With
the state lost (a new store over a funded channel), the check reads the
chain's ``totalClaimed``, where the row the deposit would create starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farthing.paywall import PaymentStore, PaywallMiddleware
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
from tests.paywall.test_channel_paywall import _app, _challenge, _Channel

pytestmark = pytest.mark.anvil
MISMATCH = "invalid_batch_settlement_evm_cumulative_amount_mismatch"


def _channel_store(env: ChainEnv, path: Path) -> ChannelStore:
    return ChannelStore(
        f"sqlite:///{path}",
        domain=ChannelDomain(env.chain.chain_id),
        network=env.chain.network,
        escrow=ChannelEscrow(env.chain),
    )


@pytest.fixture(name="channel_store")
def channel_store_fixture(chain_env: ChainEnv, tmp_path: Path) -> Iterator[ChannelStore]:
    place_channel_contracts(chain_env.chain)
    store = _channel_store(chain_env, tmp_path / "paywall.sqlite")
    yield store
    store.dispose()


def _charged(response: httpx.Response) -> str:
    challenge = _challenge(response)
    (offer,) = [a for a in challenge["accepts"] if a["scheme"] == "batch-settlement"]
    return str(offer["extra"]["channelState"]["chargedCumulativeAmount"])


def test_a_top_up_with_a_wrong_voucher_is_refused_before_the_chain(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer, p = chain_env, LocalSigner.generate(), PRICE_ATOMIC
    ch = _Channel(env, authorizer)
    app = _app(env, store, channel_store, authorizer)
    escrow = ChannelEscrow(env.chain)

    async def go() -> None:
        async with asgi_client(app) as http:
            first = await http.get("/api/data", headers=ch.header(ch.deposit(10 * p, p)))
            assert first.status_code == 200, first.text
            block = env.chain.block_number()
            # A replayed ceiling, one too far ahead, one below the price: all refused unsent.
            for ceiling in (p, 3 * p, p + 1):
                refused = await http.get("/api/data", headers=ch.header(ch.deposit(5 * p, ceiling)))
                assert refused.status_code == 402, refused.text
                assert _challenge(refused)["error"] == MISMATCH
                assert _charged(refused) == str(p)
            assert env.chain.block_number() == block
            assert escrow.channel(ch.id)[0] == 10 * p
            # The right top-up lands and is charged.
            topped = await http.get("/api/data", headers=ch.header(ch.deposit(5 * p, 2 * p)))
            assert topped.status_code == 200, topped.text
            assert env.chain.block_number() == block + 1
            assert escrow.channel(ch.id)[0] == 15 * p

    asyncio.run(go())


def test_with_the_state_lost_the_check_starts_from_the_chain(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore, tmp_path: Path
) -> None:
    env, authorizer, p = chain_env, LocalSigner.generate(), PRICE_ATOMIC
    ch = _Channel(env, authorizer)

    async def deposit(app: PaywallMiddleware, ceiling: int) -> httpx.Response:
        async with asgi_client(app) as http:
            return await http.get("/api/data", headers=ch.header(ch.deposit(5 * p, ceiling)))

    first = asyncio.run(deposit(_app(env, store, channel_store, authorizer), p))
    assert first.status_code == 200, first.text
    lost = _channel_store(env, tmp_path / "lost.sqlite")
    try:
        app = _app(env, store, lost, authorizer)
        block = env.chain.block_number()
        # The client is ahead of what the chain shows (nothing claimed yet): resync, unsent.
        ahead = asyncio.run(deposit(app, 2 * p))
        assert ahead.status_code == 402
        assert _challenge(ahead)["error"] == MISMATCH
        assert _charged(ahead) == "0"
        assert env.chain.block_number() == block
        assert lost.records() == []  # judged from a read; nothing written
        # After the resync the deposit lands.
        resynced = asyncio.run(deposit(app, p))
        assert resynced.status_code == 200, resynced.text
        assert env.chain.block_number() == block + 1
    finally:
        lost.dispose()
