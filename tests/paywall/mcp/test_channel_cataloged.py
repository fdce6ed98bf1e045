"""A tool sold only through a batch-settlement channel is cataloged from its deposit, with the seller's words.

All real: the module's anvil with our channel contracts at the canonical
addresses, SQLite payment, channel and catalog databases, ``PaidTools``
served on uvicorn (127.0.0.1) settling through a ``RemoteFacilitator`` to
``facilitator_app`` (what ``farthing facilitator serve`` runs) with a
catalog, and ``mcp``'s ``ClientSession``; deposits and vouchers are signed
with Farthing's scheme code. The deposit's ``/settle`` carries the tool's
declaration as an ``exact`` payment's does, so the catalog lists the tool
with its ``batch-settlement`` offer. Attack: the buyer's payment names
another URL and declares another tool; the catalog keeps the seller's.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from farthing.paywall import PaymentStore, PaywallOptions, RemoteFacilitator
from farthing.paywall.discovery import Catalog, Search, ServiceMetadata, SiteDiscovery, declare_tool
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.mcp.tools import PaidTools
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.wallet.signer import LocalSigner
from tests.conftest import free_port
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, text_of
from tests.paywall.test_channel_paywall import DELAY_S, _Channel

pytestmark = pytest.mark.anvil

EVIL = "https://evil.example/mcp"


@dataclass
class Metered:
    url: str
    endpoint: str
    authorizer: LocalSigner
    catalog: Catalog


@pytest.fixture(scope="module")
def metered(chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    from mcp.server.fastmcp import FastMCP

    place_channel_contracts(chain_env.chain)
    folder = tmp_path_factory.mktemp("channel-cataloged")
    channels = ChannelStore(
        f"sqlite:///{folder / 'paywall.sqlite'}",
        domain=ChannelDomain(chain_env.chain.chain_id),
        network=chain_env.chain.network,
        escrow=ChannelEscrow(chain_env.chain),
    )
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    catalog = Catalog.sqlite(folder / "catalog.sqlite")
    authorizer = LocalSigner.generate()
    # Over ASGITransport: the catalog records before the answer returns, and no
    # connection outlives the test (a tool server runs no lifespan to close it).
    remote = RemoteFacilitator(
        "http://facilitator.test",
        transport=httpx.ASGITransport(facilitator_app(chain_env.facilitator(), catalog=catalog)),
    )
    server = FastMCP("metered", stateless_http=True, json_response=True)
    paid = PaidTools(
        server,
        options=PaywallOptions(
            routes=(),
            facilitator=remote,
            store=store,
            pay_to=chain_env.merchant,
            asset=chain_env.asset,
            channels=ChannelOptions(
                channels, authorizer, withdraw_delay_s=DELAY_S, claim_in_background=False
            ),
            discovery=SiteDiscovery(service=ServiceMetadata("Quotes")),
        ),
    )

    @paid.tool(PRICE_ATOMIC, schemes=("batch-settlement",), description="A quote for a symbol.")
    async def quote(symbol: str) -> str:
        return f"{symbol}: 42"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve_in_thread(paid.app(public_url=base), port=port):
        yield Metered(base, f"{base}/mcp", authorizer, catalog)
    store.dispose()
    channels.dispose()
    catalog.dispose()


def _meta(channel: _Channel, payload: dict[str, Any], **echo: Any) -> dict[str, Any]:
    header = channel.header(payload)["payment-signature"]
    return {"x402/payment": {**json.loads(base64.b64decode(header)), **echo}}


def test_a_deposit_catalogs_the_tool_from_the_sellers_declaration(
    metered: Metered, chain_env: ChainEnv
) -> None:
    ch = _Channel(chain_env, metered.authorizer)
    bait = declare_tool("steal", {"type": "object"}, description="free money")
    offered = asyncio.run(call_tool(metered.url, "quote", {"symbol": "ABC"}))
    assert offered.structuredContent is not None
    assert offered.structuredContent["resource"]["url"] == metered.endpoint
    assert offered.structuredContent["extensions"]["bazaar"]["info"]["input"]["toolName"] == "quote"
    assert metered.catalog.search(Search()).items == []  # nothing is cataloged before a sale

    echo = {"resource": {"url": EVIL, "serviceName": "Evil"}, "extensions": {"bazaar": bait}}
    meta = _meta(ch, ch.deposit(10 * PRICE_ATOMIC, PRICE_ATOMIC), **echo)
    paid = asyncio.run(call_tool(metered.url, "quote", {"symbol": "ABC"}, meta))
    assert paid.isError is False, text_of(paid)
    assert text_of(paid) == "ABC: 42"

    (entry,) = metered.catalog.search(Search()).items
    assert (entry["resource"], entry["type"], entry["toolName"]) == (
        metered.endpoint,
        "mcp",
        "quote",
    )
    assert entry["serviceName"] == "Quotes"
    (accepted,) = entry["accepts"]
    assert (accepted["scheme"], accepted["amount"]) == ("batch-settlement", str(PRICE_ATOMIC))
    assert accepted["payTo"] == chain_env.merchant

    # A voucher reaches no facilitator: the entry stays as the deposit made it.
    more = asyncio.run(
        call_tool(metered.url, "quote", {"symbol": "DEF"}, _meta(ch, ch.voucher(2 * PRICE_ATOMIC)))
    )
    assert more.isError is False, text_of(more)
    assert [e["resource"] for e in metered.catalog.search(Search()).items] == [metered.endpoint]
