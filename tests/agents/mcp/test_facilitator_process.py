"""Interop with a real facilitator process: our paying MCP client pays a tool the x402 SDK's ``x402.mcp`` wrapper guards, settled through ``farthing facilitator serve``.

The seller is the SDK's own MCP payment wrapper (``x402ResourceServer`` with
``HTTPFacilitatorClient``) on a FastMCP server over streamable HTTP; its
facilitator is our command line started as a process on anvil, with the
shop's token and payee allowed by flags. The agent pays within its policy:
the chain moves exactly the price to the merchant, its books post exactly
that and reconcile with the chain, and a second call pays again (a new
payment, never the first one replayed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.agents.mcp.session import PayingSession, ToolCall, open_mcp
from farthing.agents.reservations import booked_payments
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import reconcile
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.agents.mcp.conftest import PRICE, Buyer, Shop, make_buyer, mcp_server
from tests.paywall.conftest import serve_in_thread
from tests.paywall.facilitator_process import private_file, running_facilitator

pytestmark = [pytest.mark.anyio, pytest.mark.anvil]


@pytest.fixture(scope="module")
def process_shop(anvil_chain: RpcChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    chain = anvil_chain
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[7].signer()
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    merchant = LocalSigner.generate().address
    folder = tmp_path_factory.mktemp("facilitator")
    key = private_file(folder / "relayer.key", relayer.private_key.get_secret_value())
    allowed = ("--asset", asset.address, "--payee", merchant)
    with running_facilitator(chain.rpc_url or "", key, folder / "data", *allowed) as served:
        app = mcp_server(asset, merchant, served.url)
        with serve_in_thread(app) as base:
            yield Shop(chain, asset, token, owner, merchant, served.url, f"{base}/mcp")


async def _call(buyer: Buyer, tool: str) -> ToolCall:
    shop = buyer.shop
    async with open_mcp(shop.mcp_url, buyer.payer.settings) as session:
        paying = PayingSession(session, buyer.payer, shop.mcp_url)
        return await paying.call_tool(tool, {"city": "Porto"}, max_price=PRICE, task_id=None)


async def test_our_mcp_client_pays_an_sdk_tool_settled_by_the_facilitator_process(
    process_shop: Shop, tmp_path: Path
) -> None:
    shop = process_shop
    buyer = make_buyer(shop, tmp_path)
    try:
        start = shop.chain.block_number()
        merchant_before = shop.token.balance_of(shop.merchant)
        first = await _call(buyer, "weather")
        second = await _call(buyer, "weather")
        for result in (first, second):
            assert result.delivered, result
            assert result.text(100) == "sunny in Porto"
            assert result.outcome is not None and result.outcome.status == "paid"
            assert result.outcome.amount == PRICE and result.outcome.tx_hash
        assert first.outcome is not None and second.outcome is not None
        assert first.outcome.tx_hash != second.outcome.tx_hash
        assert shop.token.balance_of(shop.merchant) == merchant_before + 2 * PRICE
        assert shop.token.balance_of(buyer.agent.address) == 1_000_000 - 2 * PRICE
        payments = booked_payments(buyer.books)
        assert [(p.state, p.amount) for p in payments] == [("posted", PRICE)] * 2
        view = TokenChainView(shop.chain, shop.asset)
        report = reconcile(buyer.database, view, from_block=start)
        assert not report.unresolved_breaks
    finally:
        buyer.database.dispose()
