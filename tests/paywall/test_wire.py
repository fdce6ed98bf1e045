"""Our x402 v2 headers are byte-compatible with the official SDK's, in both directions.

Pure functions, no chain: each header we write is decoded by the x402 SDK's
own decoders (``x402.http.utils``) into its pydantic models with the same
values, and what the SDK encodes is decoded by ours.
"""

from __future__ import annotations

import base64
import json

from x402.http.utils import (
    decode_payment_required_header,
    decode_payment_response_header,
    decode_payment_signature_header,
    encode_payment_signature_header,
)

from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResult,
    VerifyResult,
    decode_payment_signature,
    encode_payment_signature,
)
from farthing.wallet.eip3009 import build_authorization, sign_authorization
from farthing.wallet.signer import LocalSigner

TOKEN = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


def _requirements(pay_to: str) -> PaymentRequirements:
    return PaymentRequirements(
        network="eip155:84532",
        asset=TOKEN.lower(),  # stored checksummed whatever the input case
        amount=10_000,
        pay_to=pay_to,
        max_timeout_seconds=60,
        token_name="USDC",
        token_version="2",
    )


def _payload() -> tuple[PaymentPayload, LocalSigner]:
    payer = LocalSigner.generate()
    requirements = _requirements(LocalSigner.generate().address)
    auth = build_authorization(from_address=payer.address, to=requirements.pay_to, value=10_000)
    signed = sign_authorization(payer, auth, requirements.domain())
    return PaymentPayload(requirements, auth, signed.signature, "http://shop/a"), payer


def test_payment_required_header_is_what_the_sdk_reads() -> None:
    requirements = _requirements(LocalSigner.generate().address)
    challenge = PaymentRequired(
        ResourceInfo("http://shop/a", "an article", "text/html"), (requirements,)
    )
    theirs = decode_payment_required_header(challenge.header())
    assert theirs.x402_version == 2 and theirs.error is None
    assert theirs.resource is not None and theirs.resource.mime_type == "text/html"
    (accepts,) = theirs.accepts
    assert accepts.asset == TOKEN and accepts.amount == "10000"
    assert accepts.pay_to == requirements.pay_to and accepts.max_timeout_seconds == 60
    assert accepts.extra == {"name": "USDC", "version": "2"}
    # Standard base64 of camelCase JSON, as DESIGN §4 says.
    raw = json.loads(base64.b64decode(challenge.header()))
    assert set(raw["accepts"][0]) == {
        "scheme", "network", "asset", "amount", "payTo", "maxTimeoutSeconds", "extra",
    }  # fmt: skip


def test_payment_signature_round_trips_through_the_sdk() -> None:
    payload, payer = _payload()
    theirs = decode_payment_signature_header(encode_payment_signature(payload))
    assert theirs.payload["authorization"]["from"] == payer.address
    assert theirs.payload["signature"] == "0x" + payload.signature.hex()
    assert theirs.accepted.amount == "10000"
    ours = decode_payment_signature(encode_payment_signature_header(theirs))
    assert ours == payload


def test_settle_and_verify_results_speak_the_sdk_shape() -> None:
    settled = SettleResult(True, "eip155:84532", "0x" + "ab" * 32, "0x" + "11" * 20, 10_000)
    theirs = decode_payment_response_header(settled.header())
    assert (theirs.success, theirs.transaction, theirs.amount) == (True, "0x" + "ab" * 32, "10000")
    assert SettleResult.from_wire(settled.to_wire()) == settled
    refused = VerifyResult(False, "nonce_already_used", "0x" + "11" * 20, "used")
    assert refused.to_wire() == {
        "isValid": False,
        "invalidReason": "nonce_already_used",
        "invalidMessage": "used",
        "payer": "0x" + "11" * 20,
    }
    assert VerifyResult.from_wire(refused.to_wire()) == refused
