"""A payer who revokes Permit2 (or empties its wallet) during an ``upto`` stream gets that stream unpaid: a residual, bounded and said.

An ``upto`` permit settles once, at the end of the stream, and nothing is
escrowed meanwhile: the payer's wallet can change its mind while the tokens
flow. Found by attack on ``farthing inference gateway --upto`` (a real
process with its local facilitator on anvil, ``fake_vllm.py`` as a paced
process): the payer approves Permit2, pays a stream, and sends
``approve(Permit2, 0)`` after the first events. The stream still ends cleanly
(no 500, no traceback): its final event carries the failed settlement and its
reason (``permit2_allowance_required``), then ``[DONE]``; nothing moves on
chain, the payment's row is ``failed`` (never retried as if unknown), and the
same header replayed is the 412 that asks for the approval, with no
stream. What is lost is one stream, at most the
quote (prompt + ``max_tokens``, itself capped by ``--max-tokens-max``): a
seller who will not carry that sells streams through ``batch-settlement``,
whose deposit is escrowed before the first token (docs/inference.md, "Which
scheme for what").
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from farthing.inference.streaming import PAYMENT_EVENT
from farthing.paywall.schemes.upto.client import (
    _call,
    approve_permit2,
    payment_header,
    upto_payment,
)
from farthing.paywall.schemes.upto.contract import PERMIT2_ADDRESS, place_upto_contracts
from farthing.paywall.schemes.upto.wire import UptoRequirements, parse_requirements
from farthing.wallet.chain import Call, RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.inference.conftest import PAYER_FUNDS, fake_vllm_process
from tests.inference.fake_vllm import MODEL
from tests.inference.test_cli import gateway_process
from tests.paywall.facilitator_process import private_file

pytestmark = pytest.mark.anvil

BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "a farthing?"}],
    "max_tokens": 40,
    "stream": True,
}
REVOKE_AFTER_EVENTS = 3


def _upto_offer(answer: httpx.Response) -> UptoRequirements:
    assert answer.status_code == 402, answer.text
    challenge = json.loads(base64.b64decode(answer.headers["payment-required"]))
    offer = parse_requirements(next(a for a in challenge["accepts"] if a["scheme"] == "upto"))
    assert isinstance(offer, UptoRequirements), offer
    return offer


def test_a_payer_who_revokes_mid_stream_ends_the_stream_cleanly_and_moves_nothing(
    anvil_chain: RpcChain, tmp_path: Path
) -> None:
    chain = anvil_chain
    place_upto_contracts(chain)
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[5]
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    assert chain.send(Call(payer.address, b"", 10**17), sender=owner).ok
    assert approve_permit2(chain, payer, asset.address).ok
    merchant = LocalSigner.generate().address
    key = private_file(tmp_path / "relayer.key", relayer.private_key.get_secret_value())
    database = tmp_path / "payments.sqlite"
    with (
        fake_vllm_process("ok", "--stream-tokens", "30", "--stream-delay-s", "0.1") as (
            upstream,
            _,
        ),
        gateway_process(
            [
                "--upstream", upstream, "--pay-to", merchant, "--rpc-url", chain.rpc_url or "",
                "--token", asset.address, "--key-file", str(key), "--upto",
                "--database-url", f"sqlite:///{database}",
            ],
            tmp_path,
        ) as (ready, _),
    ):  # fmt: skip
        url = f"{ready['url']}/v1/chat/completions"
        with httpx.Client(timeout=60) as http:
            offer = _upto_offer(http.post(url, json=BODY))
            payment = upto_payment(offer, payer, now=chain.timestamp())
            headers = {"PAYMENT-SIGNATURE": payment_header(payment)}
            events, text = 0, ""
            with http.stream("POST", url, json=BODY, headers=headers) as answer:
                assert answer.status_code == 200
                for line in answer.iter_lines():
                    text += line + "\n"
                    events += line.startswith("data:")
                    if events == REVOKE_AFTER_EVENTS:
                        revoke = _call(asset.address, "approve", PERMIT2_ADDRESS, 0)
                        assert chain.send(revoke, sender=payer).ok
                        events += 1
            assert text.rstrip().endswith("data: [DONE]"), text[-400:]
            charge_event = text.split(f"event: {PAYMENT_EVENT}\ndata: ", 1)[1].split("\n", 1)[0]
            receipt = json.loads(charge_event)["payment_response"]
            assert receipt["success"] is False
            assert receipt["errorReason"] == "permit2_allowance_required", receipt
            assert token.balance_of(merchant) == 0
            assert token.balance_of(payer.address) == PAYER_FUNDS
            replay = http.post(url, json=BODY, headers=headers)
            assert replay.status_code == 412, replay.text  # the allowance is gone: no stream
            assert "data:" not in replay.text
    with sqlite3.connect(database) as db:
        states = db.execute("SELECT state, scheme FROM paywall_payment").fetchall()
    assert states == [("failed", "upto")]
    assert token.balance_of(merchant) == 0
