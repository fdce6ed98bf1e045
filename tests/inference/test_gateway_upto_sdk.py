"""x402 ``upto`` with the official SDK on either side of our gateway: its client pays it, its facilitator settles it.

All on a fresh anvil of this module's own (the SDK's client dates its
permit by the wall clock, so no other test may have moved this chain's
clock), with our Permit2 and x402UptoPermit2Proxy at the canonical
addresses and a fake vLLM behind the paid gateway (``fake_vllm.py``: five
completion tokens):

- the SDK's ``x402HttpxClient`` with its ``upto`` client scheme pays our
  gateway served by uvicorn, settled by our local facilitator: the chain
  moves the usage's price, not the signed ceiling;
- our agent pays the same gateway whose facilitator is the SDK's own
  ``x402Facilitator`` with its ``upto`` facilitator scheme and web3 signer
  (reached through :class:`SdkUptoFacilitator`, which only converts our wire
  objects to the SDK's models and back): the SDK settles our server's
  charge, and the agent's books post exactly that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from farthing.agents.outcome import outcome_of
from farthing.agents.reservations import booked_payments
from farthing.devchain.node import start_anvil
from farthing.inference import Gateway, GatewayPayment
from farthing.inference.pricing import call_price_atomic
from farthing.paywall import LocalFacilitator
from farthing.paywall.schemes.upto.client import approve_permit2
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.paywall.seam import Supported
from farthing.paywall.wire import SettleResult, VerifyResult, unb64_json
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from tests.agents.conftest import World, make_world
from tests.agents.upto_seller import approve_permit2 as agent_approves
from tests.agents.upto_seller import give_gas
from tests.inference.conftest import fake_upstream, fast_settings
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anvil

MESSAGES = [{"role": "user", "content": "Summarise the farthing's history in one line."}]
COMPLETION_TOKENS = 5
BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 40}


@pytest.fixture(scope="module")
def own_anvil(anvil: Any) -> Iterator[RpcChain]:
    with start_anvil() as node:
        chain = node.chain()
        place_upto_contracts(chain)
        yield chain


@pytest.fixture
def world(own_anvil: RpcChain, tmp_path: Path) -> Iterator[World]:
    made = make_world(own_anvil, tmp_path, funds=10_000_000)
    made.set_policy()
    yield made
    made.close()


def gateway(world: World, facilitator: Any) -> Gateway:
    settings = fast_settings()
    payment = GatewayPayment(
        facilitator=facilitator,
        store=world.store,
        asset=world.asset,
        pay_to=world.merchant,
        upto=True,
    )
    return Gateway(settings, upstream=fake_upstream(FakeVllm(), settings), payment=payment)


def usage_price(app: Gateway) -> tuple[int, int]:
    async def quote() -> dict[str, Any]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        ) as client:
            answer: dict[str, Any] = (await client.post("/v1/price", json=BODY)).json()
            return answer

    found = asyncio.run(quote())
    used = call_price_atomic(
        prompt_tokens(MESSAGES) + COMPLETION_TOKENS, found["price_per_1k_atomic"]
    )
    return int(found["amount"]), used


def test_the_sdk_upto_client_pays_our_gateway_its_usage(world: World) -> None:
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.upto import UptoEvmClientScheme

    payer = LocalSigner.generate()
    world.fund(5_000_000, to=payer.address, book=False)
    give_gas(world.chain, payer.address)
    assert approve_permit2(world.chain, payer, world.asset.address).ok  # the one-time approval
    app = gateway(world, LocalFacilitator(world.chain, world.relayer))
    ceiling, used = usage_price(app)
    assert 0 < used < ceiling

    client = x402Client()
    client.register(
        world.chain.network,
        UptoEvmClientScheme(Account.from_key(payer.private_key.get_secret_value())),
    )
    client.set_spend_controls(
        {"allowed_assets": [{"network": world.chain.network, "asset": world.asset.address}]}
    )

    async def go(url: str) -> httpx.Response:
        async with x402HttpxClient(client, timeout=30.0) as http:
            return await http.post(f"{url}/v1/chat/completions", json=BODY)

    with serve_in_thread(app) as url:
        response = asyncio.run(go(url))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == COMPLETION_TOKENS
    receipt = unb64_json(response.headers["payment-response"])
    assert receipt["success"] is True and receipt["amount"] == str(used)
    assert world.token.balance_of(world.merchant) == used
    assert world.token.balance_of(payer.address) == 5_000_000 - used


class SdkUptoFacilitator:
    """The x402 SDK's facilitator, in process, behind our paywall's ``upto`` seam.

    Only the wire objects change form (ours to the SDK's pydantic models and
    back); every check and the settlement itself are the SDK's.
    """

    def __init__(self, chain: RpcChain, key: str) -> None:
        from x402 import x402Facilitator
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme

        signer = FacilitatorWeb3Signer(private_key=key, rpc_url=chain.rpc_url)
        self.sdk = x402Facilitator().register([chain.network], UptoEvmFacilitatorScheme(signer))
        self.address = Account.from_key(key).address
        self.upto = self  # what PaywallMiddleware reads the facilitator's address from

    @staticmethod
    def _models(payment: UptoPayment, requirements: UptoRequirements) -> tuple[Any, Any]:
        from x402.schemas import PaymentPayload, PaymentRequirements

        return (
            PaymentPayload.model_validate(payment.to_wire()),
            PaymentRequirements.model_validate(requirements.to_wire()),
        )

    async def verify_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> VerifyResult:
        answer = await self.sdk.verify(*self._models(payment, requirements))
        return VerifyResult(
            answer.is_valid, answer.invalid_reason, payment.payer, answer.invalid_message
        )

    async def settle_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> SettleResult:
        answer = await self.sdk.settle(*self._models(payment, requirements))
        return SettleResult.from_wire(answer.model_dump(by_alias=True, exclude_none=True))

    async def verify(self, payload: Any, requirements: Any) -> VerifyResult:
        raise AssertionError("only upto is offered")

    async def settle(self, payload: Any, requirements: Any) -> SettleResult:
        raise AssertionError("only upto is offered")

    async def supported(self) -> Supported:
        return Supported(networks=())


@pytest.mark.anyio
async def test_the_sdk_facilitator_settles_our_gateways_upto_charge(world: World) -> None:
    agent_approves(world.chain, world.token, world.agent, 2**256 - 1)
    facilitator = SdkUptoFacilitator(
        world.chain, world.chain.dev_accounts()[6].private_key.get_secret_value()
    )
    app = gateway(world, facilitator)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        quote = (await client.post("/v1/price", json=BODY)).json()
    ceiling = int(quote["amount"])
    used = call_price_atomic(
        prompt_tokens(MESSAGES) + COMPLETION_TOKENS, quote["price_per_1k_atomic"]
    )
    before = world.token.balance_of(world.agent.address)
    async with world.client(app=app) as http:
        response = await http.post("http://gateway.test/v1/chat/completions", json=BODY)
    assert response.status_code == 200, response.text
    receipt = unb64_json(response.headers["payment-response"])
    assert receipt["success"] is True and receipt["amount"] == str(used)
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.amount) == ("paid", used), outcome
    assert world.token.balance_of(world.agent.address) == before - used
    assert world.token.balance_of(world.merchant) == used
    (payment,) = booked_payments(world.books)
    assert (payment.state, payment.amount) == ("posted", used) and used < ceiling
    assert world.reconcile().breaks == ()


def test_the_gateway_command_sells_through_upto(world: World, tmp_path: Path) -> None:
    """``farthing inference gateway --upto``, a real process: the SDK's upto client pays its usage."""
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.upto import UptoEvmClientScheme

    from tests.inference.conftest import fake_vllm_process
    from tests.inference.test_cli import gateway_process

    payer = LocalSigner.generate()
    world.fund(5_000_000, to=payer.address, book=False)
    give_gas(world.chain, payer.address)
    assert approve_permit2(world.chain, payer, world.asset.address).ok
    key_file = tmp_path / "relayer.key"
    key_file.write_text(world.relayer.private_key.get_secret_value() + "\n")
    key_file.chmod(0o600)
    client = x402Client()
    client.register(
        world.chain.network,
        UptoEvmClientScheme(Account.from_key(payer.private_key.get_secret_value())),
    )
    client.set_spend_controls(
        {"allowed_assets": [{"network": world.chain.network, "asset": world.asset.address}]}
    )

    async def go(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=30.0) as plain:
            offer = await plain.post(f"{url}/v1/chat/completions", json=BODY)
        async with x402HttpxClient(client, timeout=30.0) as http:
            return offer, await http.post(f"{url}/v1/chat/completions", json=BODY)

    args = [
        "--pay-to", world.merchant, "--rpc-url", world.chain.rpc_url or "",
        "--token", world.asset.address, "--key-file", str(key_file), "--upto",
        "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}",
    ]  # fmt: skip
    printed: list[str] = []
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, *args], tmp_path, printed) as (ready, _),
    ):
        assert ready["upto"] is True
        offer, paid = asyncio.run(go(ready["url"]))
    accepts = unb64_json(offer.headers["payment-required"])["accepts"]
    assert [a["scheme"] for a in accepts] == ["exact", "upto"]
    assert accepts[1]["extra"]["facilitatorAddress"] == world.relayer.address
    assert paid.status_code == 200, paid.text
    receipt = unb64_json(paid.headers["payment-response"])
    used = int(receipt["amount"])
    assert receipt["success"] is True and 0 < used < int(accepts[1]["amount"])
    assert world.token.balance_of(world.merchant) == used
    for text in printed:
        assert world.relayer.private_key.get_secret_value().removeprefix("0x") not in text


def test_gateway_upto_without_a_facilitator_that_settles_it_is_one_line(
    world: World, tmp_path: Path
) -> None:
    from tests.inference.test_cli import farthing, one_error_line

    token_file = tmp_path / "facilitator.token"
    token_file.write_text("a-facilitator-key-for-the-gateway\n")
    token_file.chmod(0o600)
    unreachable = farthing(
        ["inference", "gateway", "--upstream", "http://127.0.0.1:9", "--pay-to", world.merchant,
         "--rpc-url", world.chain.rpc_url or "", "--token", world.asset.address,
         "--facilitator-url", "http://127.0.0.1:9", "--facilitator-token-file", str(token_file),
         "--upto"],
        tmp_path,
    )  # fmt: skip
    assert "--upto: could not ask the facilitator" in one_error_line(unreachable)
    free = farthing(
        ["inference", "gateway", "--upstream", "http://127.0.0.1:9", "--free", "--upto"], tmp_path
    )
    assert "--free charges nothing" in one_error_line(free)


def test_a_remote_facilitator_names_whom_upto_payers_let_settle(world: World) -> None:
    """The gateway behind a remote facilitator takes the upto settler from its /supported."""
    from farthing.paywall import RemoteFacilitator
    from farthing.paywall.facilitator.api import facilitator_app

    token = "a-facilitator-key-for-the-gateway"
    local = LocalFacilitator(world.chain, world.relayer)
    with serve_in_thread(facilitator_app(local, token=token)) as url:

        async def ask() -> tuple[str | None, str | None]:
            remote = RemoteFacilitator(url, token=token)
            try:
                here = await remote.upto_facilitator(world.chain.network)
                elsewhere = await remote.upto_facilitator("eip155:1")
            finally:
                await remote.aclose()
            return here, elsewhere

        here, elsewhere = asyncio.run(ask())
    assert here == world.relayer.address and elsewhere is None
