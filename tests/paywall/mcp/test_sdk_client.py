"""The official x402 SDK's MCP client pays our MCP servers: the site's fetch (exact) and a paid tool (batch-settlement).

All real: the module's anvil with our token (and our channel contracts at the
canonical addresses), SQLite payment databases, uvicorn on 127.0.0.1, and the
SDK's ``x402MCPSession`` over ``mcp``'s ``ClientSession`` on streamable HTTP,
its spend controls allowing our token. The chain moves by exactly the price;
a channel is deposited and its first voucher charged. The SDK's MCP session
does not carry a channel's state from one call to the next (it never hands
the payment response to the scheme), so its second voucher gets our
corrective 402: that limit is the SDK's, and docs/mcp.md says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from mcp.server.fastmcp import FastMCP
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from farthing.paywall import PaymentStore, PaywallOptions
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.mcp.mount import site_mount
from farthing.paywall.mcp.tools import PaidTools
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.wallet.signer import LocalSigner
from farthing.web import HostGuard
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, paywalled, serve_in_thread
from tests.paywall.mcp.conftest import mcp_session

pytestmark = pytest.mark.anvil


def _allow_our_token(client: x402Client, env: ChainEnv) -> x402Client:
    client.set_spend_controls(
        {"allowed_assets": [{"network": env.chain.network, "asset": env.asset.address}]}
    )
    return client


async def _sdk_calls(url: str, client: x402Client, name: str, args: list[dict[str, Any]]) -> Any:
    async with mcp_session(url) as session:
        paying = x402MCPSession(session, client)
        return [await paying.call_tool(name, a) for a in args]


@pytest.fixture(scope="module")
def site_url(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = PaymentStore.sqlite(tmp_path_factory.mktemp("sdk-site") / "paywall.sqlite")
    paywall = paywalled(chain_env, store, receipts=Receipts.ephemeral())
    with serve_in_thread(HostGuard(site_mount(paywall, paywall), hosts=["127.0.0.1"])) as url:
        yield url
    store.dispose()


def test_the_sdk_mcp_client_pays_the_sites_fetch_with_exact(
    chain_env: ChainEnv, site_url: str
) -> None:
    payer = chain_env.new_payer()
    merchant_before = chain_env.token.balance_of(chain_env.merchant)
    client = _allow_our_token(x402Client(), chain_env)
    client.register(chain_env.chain.network, ExactEvmClientScheme(payer))
    (result,) = asyncio.run(_sdk_calls(site_url, client, "fetch", [{"path": "/articles/sdk"}]))
    assert result.is_error is False and result.payment_made is True
    assert "".join(c.text for c in result.content).count("PAID-PART") == 2
    assert result.payment_response.success is True
    assert result.payment_response.payer == payer.address
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + PRICE_ATOMIC


@pytest.fixture(scope="module")
def channel_tools(
    chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ChannelStore]]:
    place_channel_contracts(chain_env.chain)
    folder = tmp_path_factory.mktemp("sdk-channel")
    channels = ChannelStore(
        f"sqlite:///{folder / 'paywall.sqlite'}",
        domain=ChannelDomain(chain_env.chain.chain_id),
        network=chain_env.chain.network,
        escrow=ChannelEscrow(chain_env.chain),
    )
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    server = FastMCP("metered", stateless_http=True, json_response=True)
    paid = PaidTools(
        server,
        options=PaywallOptions(
            routes=(),
            facilitator=chain_env.facilitator(),
            store=store,
            pay_to=chain_env.merchant,
            asset=chain_env.asset,
            channels=ChannelOptions(
                channels, LocalSigner.generate(), withdraw_delay_s=900, claim_in_background=False
            ),
        ),
    )

    @paid.tool(PRICE_ATOMIC, schemes=("batch-settlement",))
    async def quote(symbol: str) -> str:
        return f"{symbol}: 42"

    with serve_in_thread(server.streamable_http_app()) as url:
        yield url, channels
    store.dispose()
    channels.dispose()


def test_the_sdk_mcp_client_pays_a_tool_through_a_channel(
    chain_env: ChainEnv, channel_tools: tuple[str, ChannelStore]
) -> None:
    url, _ = channel_tools
    payer = chain_env.new_payer()
    account = Account.from_key(payer.private_key.get_secret_value())
    client = _allow_our_token(x402Client(), chain_env)
    policy = BatchSettlementDepositPolicy(deposit_multiplier=10)
    client.register(chain_env.chain.network, BatchSettlementEvmScheme(account, policy))
    calls = [{"symbol": "ABC"}, {"symbol": "DEF"}]
    first, second = asyncio.run(_sdk_calls(url, client, "quote", calls))
    # The first call deposits ten calls' worth and pays one by voucher.
    assert first.is_error is False, first.content
    assert first.content[0].text == "ABC: 42"
    assert first.payment_response.success is True
    assert first.payment_response.extra["chargedAmount"] == str(PRICE_ATOMIC)
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - 10 * PRICE_ATOMIC
    # The SDK's MCP session never hands the payment response to the channel
    # scheme (its HTTP client does), so its next voucher repeats the old
    # cumulative amount: refused with the corrective 402, the tool not run.
    assert second.is_error is True
    refused = json.loads(second.content[0].text)
    assert refused["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
    assert refused["accepts"][0]["extra"]["channelState"]["chargedCumulativeAmount"] == str(
        PRICE_ATOMIC
    )
