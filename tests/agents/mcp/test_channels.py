"""The paying MCP client pays a tool through a batch-settlement channel, as the agent does over HTTP.

The seller is Farthing's own ``PaidTools`` on a FastMCP server (streamable
HTTP on uvicorn, 127.0.0.1) offering only ``batch-settlement``, on the
session's memory chain with our channel contracts at the canonical
addresses. The agent's ``PayingSession`` goes through the same
``ChannelPayer`` as HTTP: one deposit (reserved, signed, settled on chain),
then one cumulative voucher per call, each charge booked; the escrow holds
the deposit, the books hold what was charged and what is still locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.server.fastmcp import FastMCP

from farthing.agents.channels.books import escrow_balance
from farthing.agents.channels.store import list_channels
from farthing.agents.mcp.session import PayingSession, open_mcp
from farthing.paywall import LocalFacilitator, PaymentStore, PaywallOptions
from farthing.paywall.mcp.tools import PaidTools
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.wallet.signer import LocalSigner
from tests.agents.mcp.conftest import Buyer, Shop
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anyio

CHANNEL_PRICE = 1_000
CALLS = 3


@pytest.fixture(scope="module")
def channel_url(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    chain = shop.chain
    place_channel_contracts(chain)
    folder = tmp_path_factory.mktemp("mcp-channel")
    channels = ChannelStore(
        f"sqlite:///{folder / 'paywall.sqlite'}",
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    server = FastMCP("metered", stateless_http=True, json_response=True)
    paid = PaidTools(
        server,
        options=PaywallOptions(
            routes=(),
            facilitator=LocalFacilitator(chain, chain.dev_accounts()[7].signer()),
            store=store,
            pay_to=shop.merchant,
            asset=shop.asset,
            channels=ChannelOptions(
                channels, LocalSigner.generate(), withdraw_delay_s=900, claim_in_background=False
            ),
        ),
    )

    @paid.tool(CHANNEL_PRICE, schemes=("batch-settlement",))
    async def quote(symbol: str) -> str:
        return f"{symbol}: 42"

    with serve_in_thread(server.streamable_http_app()) as url:
        yield f"{url}/mcp"
    store.dispose()
    channels.dispose()


async def test_calls_are_paid_by_voucher_after_one_deposit(
    buyer: Buyer, channel_url: str, tmp_path: Path
) -> None:
    before = buyer.shop.token.balance_of(buyer.agent.address)
    async with open_mcp(channel_url, buyer.payer.settings) as session:
        paying = PayingSession(session, buyer.payer, channel_url)
        calls = [
            await paying.call_tool("quote", {"symbol": "FTH"}, max_price=CHANNEL_PRICE)
            for _ in range(CALLS)
        ]
    for call in calls:
        assert call.delivered and call.text(50) == "FTH: 42", call
        assert call.outcome is not None and call.outcome.status == "paid"
        assert call.outcome.amount == CHANNEL_PRICE
    (channel,) = list_channels(buyer.books)
    assert channel.charged == CALLS * CHANNEL_PRICE
    deposited = before - buyer.shop.token.balance_of(buyer.agent.address)
    assert deposited == channel.balance > CALLS * CHANNEL_PRICE
    assert escrow_balance(buyer.books, channel.channel_id) == deposited - CALLS * CHANNEL_PRICE
    assert buyer.books.status(None).spent == CALLS * CHANNEL_PRICE
