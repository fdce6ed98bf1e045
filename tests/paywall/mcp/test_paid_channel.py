"""A ``PaidTools`` tool sold through a batch-settlement channel: one deposit, cumulative vouchers, refusals and a refund.

All real: the module's anvil with our channel contracts at the canonical
addresses, SQLite payment and channel databases, a FastMCP server on uvicorn
(127.0.0.1), ``mcp``'s ``ClientSession``; deposits and vouchers are signed
with Farthing's own scheme code and carried in ``_meta["x402/payment"]``.
A replayed voucher gets the corrective 402 with the channel's state, a
failing tool charges nothing, and the refund returns what was not charged.
The x402 SDK's MCP client (``x402MCPSession``, its spend controls allowing
our token) pays the same tool through a channel of its own: it deposits and
its first voucher is charged; its session does not carry the channel's state
from one call to the next (it never hands the payment response to the
scheme), so its second voucher gets our corrective 402. That limit is the
SDK's, and docs/mcp.md says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy

from farthing.paywall import PaymentStore
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, mcp_session, paid_tools, text_of
from tests.paywall.test_channel_paywall import DELAY_S, _Channel

pytestmark = pytest.mark.anvil


@dataclass
class ChannelTools:
    url: str
    authorizer: LocalSigner
    store: ChannelStore


@pytest.fixture(scope="module")
def channel_tools(
    chain_env: ChainEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChannelTools]:
    place_channel_contracts(chain_env.chain)
    folder = tmp_path_factory.mktemp("paid-channel")
    channels = ChannelStore(
        f"sqlite:///{folder / 'paywall.sqlite'}",
        domain=ChannelDomain(chain_env.chain.chain_id),
        network=chain_env.chain.network,
        escrow=ChannelEscrow(chain_env.chain),
    )
    store = PaymentStore.sqlite(folder / "paywall.sqlite")
    authorizer = LocalSigner.generate()
    options = ChannelOptions(
        channels, authorizer, withdraw_delay_s=DELAY_S, claim_in_background=False
    )
    server, paid = paid_tools("metered", chain_env, store, channels=options)

    @paid.tool(PRICE_ATOMIC, schemes=("batch-settlement",))
    async def quote(symbol: str) -> str:
        return f"{symbol}: 42"

    @paid.tool(PRICE_ATOMIC, schemes=("batch-settlement",))
    async def broken(symbol: str) -> str:
        raise RuntimeError("no quotes today")

    with serve_in_thread(server.streamable_http_app()) as url:
        yield ChannelTools(url, authorizer, channels)
    store.dispose()
    channels.dispose()


def _meta(channel: _Channel, payload: dict[str, Any]) -> dict[str, Any]:
    return {"x402/payment": unb64_json(channel.header(payload)["payment-signature"])}


def test_a_channel_pays_many_calls_with_one_deposit(
    channel_tools: ChannelTools, chain_env: ChainEnv
) -> None:
    ch, p = _Channel(chain_env, channel_tools.authorizer), PRICE_ATOMIC

    def call(name: str, payload: dict[str, Any] | None) -> Any:
        meta = _meta(ch, payload) if payload is not None else None
        return asyncio.run(call_tool(channel_tools.url, name, {"symbol": "ABC"}, meta))

    offered = call("quote", None).structuredContent
    assert [a["scheme"] for a in offered["accepts"]] == ["batch-settlement"]
    assert offered["accepts"][0]["extra"]["receiverAuthorizer"] == channel_tools.authorizer.address
    for n, payload in enumerate([ch.deposit(10 * p, p), ch.voucher(2 * p), ch.voucher(3 * p)], 1):
        result = call("quote", payload)
        assert result.isError is False, text_of(result)
        assert text_of(result) == "ABC: 42"
        extra = result.meta["x402/payment-response"]["extra"]
        assert extra["channelState"]["chargedCumulativeAmount"] == str(n * p)
    assert chain_env.token.balance_of(ch.payer.address) == 50_000_000 - 10 * p
    replayed = call("quote", ch.voucher(3 * p))
    assert replayed.isError is True
    assert replayed.structuredContent["error"].endswith("cumulative_amount_mismatch")
    state = replayed.structuredContent["accepts"][0]["extra"]["channelState"]
    assert state["chargedCumulativeAmount"] == str(3 * p)
    failed = call("broken", ch.voucher(4 * p))
    assert failed.isError is True and "no quotes today" in text_of(failed)
    assert call("quote", ch.voucher(4 * p)).isError is False  # the failed call charged nothing
    refund = ch.voucher(4 * p)
    refund["type"] = "refund"
    refunded = call("quote", refund)
    assert refunded.isError is False, text_of(refunded)
    assert refunded.structuredContent["refunded"] == str(6 * p)
    assert chain_env.token.balance_of(ch.payer.address) == 50_000_000 - 4 * p
    (record,) = channel_tools.store.records()
    assert record.charged == 4 * p


def test_the_sdk_mcp_client_pays_a_tool_through_a_channel(
    channel_tools: ChannelTools, chain_env: ChainEnv
) -> None:
    payer = chain_env.new_payer()
    account = Account.from_key(payer.private_key.get_secret_value())
    client = x402Client()
    client.set_spend_controls(
        {"allowed_assets": [{"network": chain_env.chain.network, "asset": chain_env.asset.address}]}
    )
    policy = BatchSettlementDepositPolicy(deposit_multiplier=10)
    client.register(chain_env.chain.network, BatchSettlementEvmScheme(account, policy))

    async def calls() -> list[Any]:
        async with mcp_session(channel_tools.url) as session:
            paying = x402MCPSession(session, client)
            return [await paying.call_tool("quote", {"symbol": s}) for s in ("ABC", "DEF")]

    first, second = asyncio.run(calls())
    # The first call deposits ten calls' worth and pays one by voucher.
    assert first.is_error is False, first.content
    assert first.content[0].text == "ABC: 42"
    assert first.payment_response.success is True
    assert first.payment_response.extra["chargedAmount"] == str(PRICE_ATOMIC)
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - 10 * PRICE_ATOMIC
    # Its next voucher repeats the old cumulative amount: the corrective 402, no tool run.
    assert second.is_error is True
    refused = json.loads(second.content[0].text)
    assert refused["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
    state = refused["accepts"][0]["extra"]["channelState"]
    assert state["chargedCumulativeAmount"] == str(PRICE_ATOMIC)
