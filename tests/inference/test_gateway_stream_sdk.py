"""The x402 SDK's own batch-settlement client streams a chat from our paid gateway and stays in step with the channel.

Real pieces: the gateway and its paywall with channels on the shared anvil
chain (our escrow at the canonical addresses, a SQLite channel store, the
local facilitator); the buyer is the SDK's ``x402Client`` with its
``BatchSettlementEvmScheme`` (its signer reading the chain) behind
``x402_httpx_transport`` over the gateway's ASGI app. Only vLLM is the fake.
The SDK reads no charge event: a streamed answer has no ``PAYMENT-RESPONSE``
header, so its next voucher is built on an old state; our corrective 402
(``channelState`` with the payer's own signed ``voucherState``) resyncs it,
as the spec says, and the SDK retries once by itself. Every call is charged
its usage, never the ceiling, and the claim moves exactly their sum.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402_httpx_transport
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy
from x402.mechanisms.evm.signers import EthAccountSignerWithRPC

from farthing.inference.pricing import call_price_atomic
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import PaymentStore
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.inference.conftest import PAYER_FUNDS, PaidEnv
from tests.inference.fake_vllm import FakeVllm
from tests.inference.test_gateway_metered import Metered
from tests.inference.test_gateway_stream import PROMPT, chat, payment_event, text_of

pytestmark = pytest.mark.anyio

TOKENS = 5


@pytest.fixture(name="anvil_env")
def anvil_env_fixture(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[PaidEnv]:
    accounts = [a.signer() for a in anvil_chain.dev_accounts()[:8]]
    owner, relayer = accounts[0], accounts[7]
    asset = deploy_stablecoin(anvil_chain, sender=owner)
    token = Stablecoin(anvil_chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    store = PaymentStore.sqlite(tmp_path / "gateway-payments.sqlite")
    ledger = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}"))
    upgrade_database(ledger)
    merchant = LocalSigner.generate().address
    yield PaidEnv(anvil_chain, asset, token, relayer, merchant, payer, store, ledger)
    store.dispose()
    ledger.engine.dispose()


@pytest.fixture(name="on_anvil")
def on_anvil_fixture(anvil_env: PaidEnv, tmp_path: Path) -> Iterator[Metered]:
    chain = anvil_env.chain
    place_channel_contracts(chain)
    store = ChannelStore(
        f"sqlite:///{tmp_path / 'gateway-channels.sqlite'}",
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )
    yield Metered(anvil_env, store)
    store.dispose()


class Seen(httpx.AsyncBaseTransport):
    """The gateway in-process, counting the corrective 402s it answers."""

    def __init__(self, app: object) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.corrective = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 402 and "payment-signature" in request.headers:
            terms = unb64_json(response.headers["payment-required"])
            if terms.get("error", "").endswith("cumulative_amount_mismatch"):
                self.corrective += 1
        return response


def sdk_client(metered: Metered) -> x402Client:
    env = metered.env
    account = Account.from_key(env.payer.private_key.get_secret_value())
    assert isinstance(env.chain, RpcChain) and env.chain.rpc_url is not None
    signer = EthAccountSignerWithRPC(account, rpc_url=env.chain.rpc_url)
    client = x402Client()
    client.register(
        env.chain.network,
        BatchSettlementEvmScheme(signer, BatchSettlementDepositPolicy(deposit_multiplier=5)),
    )
    client.set_spend_controls(
        {"allowed_assets": [{"network": env.chain.network, "asset": env.asset.address}]}
    )
    return client


@pytest.mark.anvil
async def test_the_sdk_client_streams_and_resyncs_and_each_call_is_charged_its_usage(
    on_anvil: Metered, fake_vllm: FakeVllm
) -> None:
    metered = on_anvil
    app = metered.gateway(fake_vllm)
    seen = Seen(app)
    transport = x402_httpx_transport(sdk_client(metered), seen)
    charges = []
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", timeout=30
    ) as http:
        per_1k = (await http.post("/v1/price", json=chat())).json()["price_per_1k_atomic"]
        used = call_price_atomic(PROMPT + TOKENS, per_1k)
        for _ in range(3):
            async with http.stream("POST", "/v1/chat/completions", json=chat()) as answer:
                body = await answer.aread()
            assert answer.status_code == 200, body
            assert text_of(body) == "tok " * TOKENS
            charges.append(int(payment_event(body)["extra"]["chargedAmount"]))
        plain = await http.post("/v1/chat/completions", json={**chat(), "stream": False})
        assert plain.status_code == 200, plain.text
    assert charges == [used] * 3
    # Each call after a stream was resynced by exactly one corrective 402.
    assert seen.corrective == 3
    receipt = unb64_json(plain.headers["payment-response"])
    assert receipt["extra"]["chargedAmount"] == str(used)
    assert receipt["extra"]["channelState"]["chargedCumulativeAmount"] == str(4 * used)
    (record,) = metered.store.records()  # the SDK's channel, with the salt it chose
    assert (record.charged, record.held) == (4 * used, 0)
    claimer = ChannelClaimer(metered.store, metered.facilitator, metered.authorizer)
    report = await claimer.tick(force=True)
    assert report.failures == () and report.settled == 4 * used
    assert metered.env.balance(metered.env.merchant) == 4 * used
