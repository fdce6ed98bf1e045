"""The official x402 SDK's MCP client pays the site's ``fetch`` over ``/mcp`` with exact.

All real: the module's anvil with our token, a SQLite payment database,
uvicorn on 127.0.0.1, and the SDK's ``x402MCPSession`` over ``mcp``'s
``ClientSession`` on streamable HTTP, its spend controls allowing our token.
The chain moves by exactly the price. The SDK paying a tool through a
channel is in test_paid_channel.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from farthing.paywall import PaymentStore
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.mcp.mount import site_mount
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
