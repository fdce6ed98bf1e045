"""A payer signs in with the paying wallet (x402 sign-in-with-x) and reads again; others cannot.

The 402 of an article route declares the extension with the fields the x402
spec names (the SDK's models need x402[extensions]); a wallet signs the
EIP-4361 message with EIP-191 (eth-account, as a wallet does) and retries
with the ``SIGN-IN-WITH-X`` header through the real middleware on anvil.
Wrong site, old, forged, or foreign-nonce sign-ins, and wallets that never
paid, get the 402.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import SecretStr

from farthing.paywall import PaymentStore
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.sign_in import (
    SignIn,
    SignInRefusal,
    declare_sign_in,
    siwe_message,
    verify_sign_in,
)
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import ChainEnv, asgi_client, challenge_of, paywalled, run, sign_for

SECRET = SecretStr("Zq7-Vn2xLk9Pw4Rt6Yb1Hc8Jd3Fm5Gs0Ua-Eo")
URL = "http://paywall.test/articles/farthing"
NETWORK = "eip155:31337"


def _signed(info: dict[str, Any], signer: LocalSigner, **bend: Any) -> str:
    payload = {**info, "address": signer.address, "chainId": NETWORK, "type": "eip191", **bend}
    message = siwe_message(payload)
    key = signer.private_key.get_secret_value()
    payload["signature"] = (
        "0x" + Account.sign_message(encode_defunct(text=message), key).signature.hex()
    )
    return base64.b64encode(json.dumps(payload).encode()).decode()


def test_the_declaration_has_the_fields_the_x402_spec_names() -> None:
    declared = declare_sign_in(URL, NETWORK, Receipts(SECRET))
    info = declared["info"]
    assert {"domain", "uri", "version", "nonce", "issuedAt", "expirationTime"} <= set(info)
    assert info["domain"] == "paywall.test" and info["resources"] == [URL]
    assert declared["supportedChains"] == [{"chainId": NETWORK, "type": "eip191"}]


def test_sign_ins_are_checked_before_they_count() -> None:
    receipts = Receipts(SECRET)
    signer = LocalSigner.generate()
    info = declare_sign_in(URL, NETWORK, receipts)["info"]
    check = lambda header, **kw: verify_sign_in(
        header, resource_url=URL, network=NETWORK, receipts=receipts, **kw
    )
    assert check(_signed(info, signer)) == SignIn(signer.address)
    refusals = {
        "domain": check(_signed(info, signer, domain="evil.test")),
        "chain": check(_signed(info, signer, chainId="eip155:1")),
        "nonce": check(_signed(info, signer, nonce="0123456789abcdef0123456789abcdef")),
        "old": check(_signed(info, signer), now=datetime.now(UTC) + timedelta(hours=1)),
        "junk": check("not base64 json"),
    }
    forged = json.loads(base64.b64decode(_signed(info, signer)))
    forged["address"] = LocalSigner.generate().address
    refusals["forged"] = check(base64.b64encode(json.dumps(forged).encode()).decode())
    for name, refusal in refusals.items():
        assert isinstance(refusal, SignInRefusal), name
    assert refusals["nonce"].reason == "invalid_siwx_nonce"
    assert refusals["forged"].reason == "invalid_siwx_signature"


@pytest.mark.anvil
def test_the_paying_wallet_signs_in_and_reads_again_a_stranger_does_not(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    payer, stranger = chain_env.new_payer(), chain_env.new_payer()
    app = paywalled(chain_env, store, receipts=Receipts(SECRET), public_url="http://paywall.test")

    async def go() -> Any:
        async with asgi_client(app) as client:
            unpaid = await client.get("/articles/farthing")
            header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
            await client.get("/articles/farthing", headers={"PAYMENT-SIGNATURE": header})
            client.cookies.clear()
            fresh = await client.get("/articles/farthing")
            declared = challenge_of(fresh)["extensions"]["sign-in-with-x"]
            assert fresh.json()["extensions"]["sign-in-with-x"]["supportedChains"]
            owner = await client.get(
                "/articles/farthing", headers={"SIGN-IN-WITH-X": _signed(declared["info"], payer)}
            )
            client.cookies.clear()
            other = await client.get(
                "/articles/farthing",
                headers={"SIGN-IN-WITH-X": _signed(declared["info"], stranger)},
            )
            elsewhere = await client.get(
                "/articles/other", headers={"SIGN-IN-WITH-X": _signed(declared["info"], payer)}
            )
            return owner, other, elsewhere

    owner, other, elsewhere = run(go())
    assert owner.status_code == 200 and owner.text.count("PAID-PART") == 2
    assert owner.headers.get_list("set-cookie")  # and a receipt for next time
    assert other.status_code == 402 and "PAID-PART" not in other.text
    assert elsewhere.status_code == 402  # owning one article is not owning another
