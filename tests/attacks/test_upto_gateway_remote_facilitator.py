"""A gateway sold through ``upto`` behind a remote facilitator answers its first paid call, never a 500.

Found by attack: ``farthing inference gateway --upto --facilitator-url`` asked
the facilitator's ``/supported`` at start through the paywall's own pooled
client, in a short event loop of its own. The connection stayed in the pool
bound to that dead loop, so the first paid request (any scheme: it verifies
through the same client) was a 500 with a traceback ("Event loop is
closed"); the permit was not lost, but the payer got an error for a good
payment. The start now asks through a client of its own, closed in that
loop. Real pieces: anvil with our Permit2 and proxy, ``farthing facilitator
serve`` (API key) and the gateway as real processes, the payer's ``upto``
permit signed by our client; only vLLM is the fake (``fake_vllm.py`` as a
process). The first paid call, streamed, is a 200 ending in its charge
event, the chain moves exactly that charge once, and a replay of the same
header is a 402 that moves nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from farthing.inference.streaming import PAYMENT_EVENT
from farthing.paywall.schemes.upto.client import approve_permit2, payment_header, upto_payment
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.schemes.upto.wire import UptoRequirements, parse_requirements
from farthing.wallet.chain import Call, RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.inference.conftest import PAYER_FUNDS, fake_vllm_process
from tests.inference.fake_vllm import MODEL
from tests.inference.test_cli import gateway_process
from tests.paywall.facilitator_process import API_KEY, private_file, running_facilitator

pytestmark = pytest.mark.anvil

BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "a farthing?"}],
    "max_tokens": 40,
    "stream": True,
}


def _upto_offer(answer: httpx.Response) -> UptoRequirements:
    assert answer.status_code == 402, answer.text
    challenge = json.loads(base64.b64decode(answer.headers["payment-required"]))
    entry = next(a for a in challenge["accepts"] if a["scheme"] == "upto")
    offer = parse_requirements(entry)
    assert isinstance(offer, UptoRequirements), offer
    return offer


def test_the_first_paid_call_after_start_is_served_and_charged_once(
    anvil_chain: RpcChain, tmp_path: Path
) -> None:
    chain = anvil_chain
    place_upto_contracts(chain)
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[7]
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    assert chain.send(Call(payer.address, b"", 10**17), sender=owner).ok
    assert approve_permit2(chain, payer, asset.address).ok
    merchant = LocalSigner.generate().address
    key = private_file(tmp_path / "relayer.key", relayer.private_key.get_secret_value())
    api_key = private_file(tmp_path / "api.key", API_KEY)
    rpc = chain.rpc_url or ""
    facilitator_options = ("--api-key-file", str(api_key), "--asset", asset.address)
    with (
        running_facilitator(rpc, key, tmp_path / "fac", *facilitator_options) as facilitator,
        fake_vllm_process() as (upstream, _),
        gateway_process(
            [
                "--upstream", upstream, "--pay-to", merchant, "--rpc-url", rpc,
                "--token", asset.address, "--facilitator-url", facilitator.url,
                "--facilitator-token-file", str(api_key), "--upto",
                "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}",
            ],
            tmp_path,
        ) as (ready, _),
    ):  # fmt: skip
        url = f"{ready['url']}/v1/chat/completions"
        with httpx.Client(timeout=60) as http:
            offer = _upto_offer(http.post(url, json=BODY))
            assert offer.facilitator_address == relayer.address
            payment = upto_payment(offer, payer, now=chain.timestamp())
            headers = {"PAYMENT-SIGNATURE": payment_header(payment)}
            before = token.balance_of(payer.address)
            answer = http.post(url, json=BODY, headers=headers)
            assert answer.status_code == 200, answer.text
            charge_event = answer.text.split(f"event: {PAYMENT_EVENT}\ndata: ", 1)[1]
            receipt = json.loads(charge_event.split("\n", 1)[0])["payment_response"]
            assert receipt["success"] is True, receipt
            charged = int(receipt["amount"])
            assert 0 < charged < offer.amount  # the usage, not the ceiling
            assert before - token.balance_of(payer.address) == charged
            assert token.balance_of(merchant) == charged
            replay = http.post(url, json=BODY, headers=headers)
            assert replay.status_code == 402, replay.text
            assert token.balance_of(merchant) == charged
