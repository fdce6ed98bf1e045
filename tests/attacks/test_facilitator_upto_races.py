"""One ``upto`` permit settles once however many copies race it across two ``facilitator serve`` processes.

Real pieces: two ``farthing facilitator serve`` processes holding the same
relayer key (so both are the permit's named facilitator, as after a restart
or behind a load balancer), anvil with our Permit2 and x402UptoPermit2Proxy,
the payer's permit signed by our client. Ten copies of one ``/settle`` (a
charge below the ceiling) sent at once, half to each process: exactly one
succeeds, one relayer transaction is mined, the payee gets the charge once;
later copies to either process, and a copy asking for the whole ceiling,
move nothing. A ``/verify`` of the spent permit is refused by both (the
second process knows it from Permit2's nonce bitmap, not its own journal).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall.schemes.upto.client import approve_permit2, upto_payment
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.schemes.upto.wire import UptoRequirements
from farthing.wallet.chain import Call, RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.paywall.facilitator_process import API_KEY, private_file, running_facilitator

pytestmark = pytest.mark.anvil

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FUNDS = 1_000_000
CEILING = 10_000
CHARGE = 7_000


def test_copies_across_two_processes_settle_once(anvil_chain: RpcChain, tmp_path: Path) -> None:
    chain = anvil_chain
    place_upto_contracts(chain)
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[6]
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, FUNDS, sender=owner).ok
    assert chain.send(Call(payer.address, b"", 10**17), sender=owner).ok
    assert approve_permit2(chain, payer, asset.address).ok
    payee = LocalSigner.generate().address
    offer = UptoRequirements(
        network=chain.network, asset=asset.address, amount=CEILING, pay_to=payee,
        max_timeout_seconds=300, token_name=asset.name, token_version=asset.version,
        facilitator_address=relayer.address,
    )  # fmt: skip
    payment = upto_payment(offer, payer, now=chain.timestamp())

    def body(amount: int) -> dict[str, Any]:
        return {
            "x402Version": 2,
            "paymentPayload": payment.to_wire(),
            "paymentRequirements": offer.charging(amount).to_wire(),
        }

    def sent() -> int:
        return int(chain.w3.eth.get_transaction_count(relayer.address))

    key = private_file(tmp_path / "relayer.key", relayer.private_key.get_secret_value())
    api_key = private_file(tmp_path / "api.key", API_KEY)
    options = ("--api-key-file", str(api_key), "--asset", asset.address)
    rpc = chain.rpc_url or ""
    with (
        running_facilitator(rpc, key, tmp_path / "a", *options) as first,
        running_facilitator(rpc, key, tmp_path / "b", *options) as second,
    ):

        def post(url: str, path: str = "/settle", amount: int = CHARGE) -> dict[str, Any]:
            with httpx.Client(base_url=url, timeout=90) as http:
                answer = http.post(path, json=body(amount), headers=AUTH)
            assert answer.status_code == 200, answer.text
            out: dict[str, Any] = answer.json()
            return out

        before = sent()
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(post, [first.url, second.url] * 5))
        settled = [a for a in answers if a["success"]]
        assert len(settled) == 1, answers
        assert settled[0]["amount"] == str(CHARGE)
        assert {a["errorReason"] for a in answers if not a["success"]} <= {
            "permit2_invalid_nonce",
            "invalid_upto_evm_transaction_failed",
        }, answers
        assert token.balance_of(payee) == CHARGE
        assert token.balance_of(payer.address) == FUNDS - CHARGE
        assert sent() - before <= 2  # the winner's, and at most one that reverted on chain
        mined = sent()
        for url in (first.url, second.url):
            assert post(url)["success"] is False
            assert post(url, amount=CEILING)["success"] is False
            verified = post(url, "/verify", CEILING)
            assert verified["isValid"] is False
            assert verified["invalidReason"] == "permit2_invalid_nonce", verified
        assert sent() == mined
        assert token.balance_of(payee) == CHARGE
