"""Our sign-in-with-x and the x402 SDK's understand each other, both ways.

The SDK is x402 2.25's ``x402.extensions.sign_in_with_x`` (its EVM half needs
``signinwithethereum``, which scripts/test.sh installs without its web3<8 pin).
One way: the SDK's own client (``x402HttpxClient`` with its exact-EVM scheme and
its SIWX client extension) buys an article from our paywall on anvil over a real
uvicorn, then a fresh SDK client of the same wallet signs in and reads it with
no new payment. The other way: the payload our agents sign (and the page's
message, built by the same rules) passes the SDK's parser, its field validator
and its signature verifier, and our EIP-4361 text equals the SDK's line for line.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from farthing.agents.sign_in import sign_challenge
from farthing.paywall import PaymentState, PaymentStore
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.sign_in import SignIn, declare_sign_in, siwe_message, verify_sign_in
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    free_port,
    paywalled,
    serve_in_thread,
)

pytest.importorskip("siwe", reason="scripts/test.sh installs signinwithethereum")
sdk = pytest.importorskip("x402.extensions.sign_in_with_x")

SECRET = SecretStr("Vq3-Lm8xPk2Rw5Tz9Yc4Hd7Jf1Gn6Bs0Ea-Uo")
URL = "http://paywall.test/articles/farthing"
NETWORK = "eip155:31337"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    "bend",
    [
        {},
        {"statement": None},
        {"resources": None},
        {"notBefore": "2026-01-01T00:00:00Z", "requestId": "r-1"},
        {"resources": [URL, "ipfs://bafy/x"]},
    ],
)
def test_our_eip4361_text_is_the_sdks(bend: dict[str, Any]) -> None:
    info = dict(declare_sign_in(URL, NETWORK, Receipts(SECRET))["info"])
    address = LocalSigner.generate().address
    payload = {**info, "address": address, "chainId": NETWORK, "type": "eip191", **bend}
    payload = {k: v for k, v in payload.items() if v is not None}
    assert siwe_message(payload) == sdk.format_siwe_message(payload, address)


def test_what_our_agents_sign_passes_the_sdks_verifier() -> None:
    signer = LocalSigner.generate()
    info = declare_sign_in(URL, NETWORK, Receipts(SECRET))["info"]
    payload = sign_challenge(signer, info, NETWORK)
    assert payload is not None and payload["address"] == signer.address  # EIP-55 form
    header = base64.b64encode(json.dumps(payload).encode()).decode()

    parsed = sdk.parse_siwx_header(header)
    validated = asyncio.run(sdk.validate_siwx_message(parsed, "http://paywall.test"))
    assert validated.is_valid, validated
    verified = asyncio.run(sdk.verify_siwx_signature(parsed))
    assert verified.is_valid and verified.payer == signer.address, verified


def test_what_the_sdk_signs_passes_our_verifier() -> None:
    receipts = Receipts(SECRET)
    signer = LocalSigner.generate()
    info = declare_sign_in(URL, NETWORK, receipts)["info"]
    payload = asyncio.run(
        sdk.create_siwx_payload({**info, "chainId": NETWORK, "type": "eip191"}, signer, URL)
    )
    header = sdk.encode_siwx_header(payload)
    check = lambda: verify_sign_in(header, resource_url=URL, network=NETWORK, receipts=receipts)
    assert check() == SignIn(signer.address)
    assert check().reason == "invalid_siwx_nonce_reused"  # type: ignore[union-attr]


def test_address_case_is_decided_like_the_sdk() -> None:
    """All-lowercase is accepted by both; a mixed case with a wrong checksum by neither."""
    receipts = Receipts(SECRET)
    signer = LocalSigner.generate()
    key = signer.private_key.get_secret_value()
    from eth_account import Account
    from eth_account.messages import encode_defunct

    def signed(address: str) -> str:
        info = declare_sign_in(URL, NETWORK, receipts, now=datetime.now(UTC))["info"]
        payload = {**info, "address": address, "chainId": NETWORK, "type": "eip191"}
        message = siwe_message(payload)
        payload["signature"] = (
            "0x" + Account.sign_message(encode_defunct(text=message), key).signature.hex()
        )
        return base64.b64encode(json.dumps(payload).encode()).decode()

    lower = signed(signer.address.lower())
    ours = verify_sign_in(lower, resource_url=URL, network=NETWORK, receipts=receipts)
    assert ours == SignIn(signer.address)
    assert _sdk_accepts(lower)
    body = signer.address[2:]
    flipped = next(i for i, c in enumerate(body) if c.isalpha())
    bad = "0x" + body[:flipped] + body[flipped].swapcase() + body[flipped + 1 :]
    refused = verify_sign_in(signed(bad), resource_url=URL, network=NETWORK, receipts=receipts)
    assert refused.reason == "invalid_siwx_address"  # type: ignore[union-attr]
    assert not _sdk_accepts(signed(bad))


def _sdk_accepts(header: str) -> bool:
    try:
        return bool(asyncio.run(sdk.verify_siwx_signature(sdk.parse_siwx_header(header))).is_valid)
    except ValueError:  # the SDK's SIWE model refuses a bad EIP-55 checksum outright
        return False


@pytest.mark.anvil
def test_the_sdk_client_buys_then_signs_in_with_the_same_wallet(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import ExactEvmClientScheme

    payer = chain_env.new_payer()

    def client() -> x402Client:
        sdk_client = x402Client()
        sdk_client.register(chain_env.chain.network, ExactEvmClientScheme(payer))
        sdk_client.set_spend_controls(
            {
                "allowed_assets": [
                    {"network": chain_env.chain.network, "asset": chain_env.asset.address}
                ]
            }
        )
        options = sdk.CreateSIWxClientExtensionOptions(signers=[payer])
        sdk_client.register_extension(sdk.create_siwx_client_extension(options))
        return sdk_client

    async def get(url: str) -> httpx.Response:
        async with x402HttpxClient(client(), timeout=30.0) as http:  # a fresh cookie jar each
            return await http.get(f"{url}/articles/farthing")

    merchant = chain_env.token.balance_of(chain_env.merchant)
    port = free_port()  # sign-in names the configured origin, so it is known before serving
    app = paywalled(
        chain_env, store, receipts=Receipts(SECRET), public_url=f"http://127.0.0.1:{port}"
    )
    with serve_in_thread(app, port=port) as url:
        bought = asyncio.run(get(url))
        again = asyncio.run(get(url))
    assert bought.status_code == 200 and bought.text.count("PAID-PART") == 2
    assert "payment-response" in bought.headers
    assert again.status_code == 200 and again.text.count("PAID-PART") == 2
    assert "payment-response" not in again.headers  # signed in, not paid
    assert chain_env.token.balance_of(chain_env.merchant) == merchant + PRICE_ATOMIC
    assert len(store.records(state=PaymentState.SETTLED)) == 1


def test_an_expired_or_not_yet_valid_message_is_refused() -> None:
    receipts = Receipts(SECRET)
    signer = LocalSigner.generate()
    now = datetime.now(UTC)
    for bend, reason in (
        ({"expirationTime": _iso(now - timedelta(seconds=5))}, "invalid_siwx_expired"),
        ({"notBefore": _iso(now + timedelta(minutes=2))}, "invalid_siwx_not_yet_valid"),
    ):
        info = {**declare_sign_in(URL, NETWORK, receipts)["info"], **bend}
        payload = sign_challenge(signer, info, NETWORK)
        assert payload is not None
        header = base64.b64encode(json.dumps(payload).encode()).decode()
        refusal = verify_sign_in(header, resource_url=URL, network=NETWORK, receipts=receipts)
        assert refusal.reason == reason  # type: ignore[union-attr]
