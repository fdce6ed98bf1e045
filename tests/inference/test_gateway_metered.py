"""Through a batch-settlement channel the gateway charges each call's real usage, with the quote as the voucher's ceiling.

Real pieces: the gateway and its paywall on the in-process memory chain with
our escrow contracts at their canonical addresses, a SQLite channel store,
and the local facilitator that takes the deposit and later claims and
settles on chain. Only vLLM is the fake (``fake_vllm.py``: it answers five
completion tokens, fewer than the ``max_tokens`` paid for). The buyer signs
its deposit and vouchers itself, so the test knows each voucher's ceiling;
the charged amounts are read from ``PAYMENT-RESPONSE``, the channel rows and
the merchant's on-chain balance after the claim. ``exact`` on the same
gateway still charges the whole quote.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.inference import Gateway, GatewayPayment
from farthing.inference.gateway import usage_charge
from farthing.inference.pricing import call_price_atomic
from farthing.inference.quoting import CallQuote, ChatCall
from farthing.paywall import LedgerRevenueBook, LocalFacilitator
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    deposit_nonce,
    place_channel_contracts,
    sign_voucher,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from tests.inference.conftest import PaidEnv, client_for, fake_upstream, fast_settings
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Summarise the farthing's history in one line."}]
MAX_TOKENS = 40
COMPLETION_TOKENS = 5  # what the fake answers when max_tokens is above it
DELAY_S = 900
DEPOSIT = 1_000_000


def chat() -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}


class Metered:
    """The seller's channel side and a buyer holding one channel to it."""

    def __init__(self, env: PaidEnv, store: ChannelStore) -> None:
        self.env, self.store = env, store
        self.authorizer = LocalSigner.generate()
        self.facilitator = LocalFacilitator(env.chain, env.relayer)
        self.domain = store.domain
        self.config = ChannelConfig(
            payer=env.payer.address,
            payer_authorizer=env.payer.address,
            receiver=env.merchant,
            receiver_authorizer=self.authorizer.address,
            token=env.asset.address,
            withdraw_delay_s=DELAY_S,
            salt=secrets.token_bytes(32),
        )
        self.channel_id = self.domain.channel_id(self.config)

    def gateway(self, fake: FakeVllm) -> Gateway:
        settings = fast_settings()
        payment = GatewayPayment(
            facilitator=self.facilitator,
            store=self.env.store,
            asset=self.env.asset,
            pay_to=self.env.merchant,
            books=LedgerRevenueBook(self.env.ledger),
            channels=ChannelOptions(
                self.store, self.authorizer, withdraw_delay_s=DELAY_S, claim_in_background=False
            ),
        )
        return Gateway(settings, upstream=fake_upstream(fake, settings), payment=payment)

    def voucher(self, ceiling: int) -> dict[str, Any]:
        signed = sign_voucher(self.env.payer, self.domain, self.channel_id, ceiling)
        return {
            "type": "voucher",
            "channelConfig": self.config.to_wire(),
            "voucher": signed.to_wire(),
        }

    def deposit(self, amount: int, ceiling: int) -> dict[str, Any]:
        salt = secrets.randbits(256)
        auth = build_authorization(
            from_address=self.env.payer.address,
            to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
            value=amount,
            valid_for_s=3600,
            now=self.env.chain.timestamp(),
            nonce=deposit_nonce(self.channel_id, salt),
        )
        signed = sign_receive_authorization(
            self.env.payer, auth, TokenDomain.for_asset(self.env.asset)
        )
        payload = {**self.voucher(ceiling), "type": "deposit"}
        payload["deposit"] = {
            "amount": str(amount),
            "authorization": {
                "erc3009Authorization": {
                    "validAfter": str(auth.valid_after),
                    "validBefore": str(auth.valid_before),
                    "salt": "0x" + salt.to_bytes(32, "big").hex(),
                    "signature": "0x" + signed.signature.hex(),
                }
            },
        }
        return payload


def offers(challenge: httpx.Response) -> dict[str, dict[str, Any]]:
    assert challenge.status_code == 402, challenge.text
    accepts = unb64_json(challenge.headers["payment-required"])["accepts"]
    return {offer["scheme"]: offer for offer in accepts}


def signature(offer: dict[str, Any], payload: dict[str, Any]) -> dict[str, str]:
    body = {"x402Version": 2, "payload": payload, "accepted": offer}
    return {"payment-signature": base64.b64encode(json.dumps(body).encode()).decode()}


@pytest.fixture(name="metered")
def metered_fixture(paid_env: PaidEnv, tmp_path: Path) -> Iterator[Metered]:
    place_channel_contracts(paid_env.chain)
    store = ChannelStore(
        f"sqlite:///{tmp_path / 'gateway-channels.sqlite'}",
        domain=ChannelDomain(paid_env.chain.chain_id),
        network=paid_env.chain.network,
        escrow=ChannelEscrow(paid_env.chain),
    )
    yield Metered(paid_env, store)
    store.dispose()


async def test_a_channel_call_is_charged_its_usage_under_the_quoted_ceiling(
    metered: Metered, fake_vllm: FakeVllm
) -> None:
    env = metered.env
    app = metered.gateway(fake_vllm)
    async with client_for(app) as client:
        quote = (await client.post("/v1/price", json=chat())).json()
        ceiling = int(quote["amount"])
        used = call_price_atomic(
            prompt_tokens(MESSAGES) + COMPLETION_TOKENS, quote["price_per_1k_atomic"]
        )
        assert 0 < used < ceiling  # the fake stops well before max_tokens

        first = offers(await client.post("/v1/chat/completions", json=chat()))
        assert set(first) == {"exact", "batch-settlement"}
        assert int(first["batch-settlement"]["amount"]) == int(first["exact"]["amount"]) == ceiling

        # One deposit with the first voucher, then a plain voucher: each
        # voucher's ceiling is what was charged so far plus the quote.
        paid = []
        payloads = [metered.deposit(DEPOSIT, ceiling), metered.voucher(used + ceiling)]
        for payload in payloads:
            offer = offers(await client.post("/v1/chat/completions", json=chat()))
            answer = await client.post(
                "/v1/chat/completions",
                json=chat(),
                headers=signature(offer["batch-settlement"], payload),
            )
            assert answer.status_code == 200, answer.text
            assert "farthing-charge" not in answer.headers  # for the paywall only
            assert answer.json()["usage"]["completion_tokens"] == COMPLETION_TOKENS
            paid.append(unb64_json(answer.headers["payment-response"]))

        exact = offers(await client.post("/v1/chat/completions", json=chat()))["exact"]
        assert int(exact["amount"]) == ceiling
        header, amount = env.pay(await client.post("/v1/chat/completions", json=chat()))
        answer = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
        assert answer.status_code == 200, answer.text
        assert amount == ceiling  # exact still charges the whole quote

    for n, receipt in enumerate(paid, start=1):
        assert receipt["success"] is True
        assert receipt["extra"]["chargedAmount"] == str(used)
        assert receipt["extra"]["channelState"]["chargedCumulativeAmount"] == str(n * used)
    record = metered.store.get(metered.channel_id)
    assert record is not None
    assert record.charged == 2 * used
    assert record.signed_max == used + ceiling  # the last voucher's ceiling: charged + quote

    claimer = ChannelClaimer(metered.store, metered.facilitator, metered.authorizer)
    report = await claimer.tick(force=True)
    assert report.failures == ()
    assert report.settled == 2 * used
    assert env.balance(env.merchant) == 2 * used + ceiling


def test_usage_is_priced_at_the_quote_and_an_unreadable_one_charges_the_ceiling() -> None:
    per_1k = 792
    one_choice = ChatCall({}, MODEL, prompt_tokens=10, max_tokens=20, digest="d")
    call = CallQuote(call=one_choice, per_1k_atomic=per_1k, amount=100, expires_at_s=0)
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    assert usage_charge(json.dumps({"usage": usage}).encode(), call) == call_price_atomic(
        15, per_1k
    )
    huge = {"prompt_tokens": 10**6, "completion_tokens": 10**6}
    assert usage_charge(json.dumps({"usage": huge}).encode(), call) == 100  # capped
    for bad in (
        b"not json",
        b"[]",
        b"{}",
        json.dumps({"usage": {"prompt_tokens": "10", "completion_tokens": 5}}).encode(),
        json.dumps({"usage": {"prompt_tokens": -1, "completion_tokens": 5}}).encode(),
        json.dumps({"usage": {"prompt_tokens": True, "completion_tokens": 5}}).encode(),
        json.dumps({"usage": {"prompt_tokens": 0, "completion_tokens": 0}}).encode(),
    ):
        assert usage_charge(bad, call) is None
