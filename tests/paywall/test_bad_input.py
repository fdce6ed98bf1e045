"""Every bad payment gets a specific answer and never content: 400 for a malformed header, 402 with a reason otherwise.

Driven through ``httpx.ASGITransport`` against a real anvil; each bad payment
is built by signing real authorizations with one thing wrong. Every case
checks that no 500 was answered, that the paid data is absent, and that the
merchant's on-chain balance did not move.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from farthing.paywall import PaymentStore
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import ChainEnv, asgi_client, challenge_of, paywalled, run, sign_for

pytestmark = pytest.mark.anvil


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _ask(app: Any, headers: dict[str, str]) -> Any:
    async def go() -> Any:
        async with asgi_client(app) as client:
            return await client.get("/api/data", headers=headers)

    return run(go())


@pytest.fixture
def accepts(chain_env: ChainEnv, store: PaymentStore) -> dict[str, Any]:
    response = _ask(paywalled(chain_env, store), {})
    accepted: dict[str, Any] = challenge_of(response)["accepts"][0]
    return accepted


def _valid_payload(accepts: dict[str, Any], payer: LocalSigner) -> dict[str, Any]:
    decoded: dict[str, Any] = unb64_json(sign_for(accepts, payer))
    return decoded


MALFORMED = {
    "not base64": ("***not base64***", "payment_header_not_base64"),
    "base64 of garbage bytes": (_b64(b"\xff\xfe\x00garbage"), "payment_header_not_json"),
    "base64 of text that is not JSON": (_b64("{not json"), "payment_header_not_json"),
    "JSON that is not an object": (_b64("[1, 2, 3]"), "invalid_payment_payload"),
    "deeply nested JSON": (_b64("[" * 2900 + "]" * 2900), "invalid_payment_payload"),
    "oversized header": ("A" * 9000, "payment_header_too_large"),
    "x402 v1": (_b64(json.dumps({"x402Version": 1, "payload": {}})), "unsupported_x402_version"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_headers_get_400_with_a_reason(
    case: str, chain_env: ChainEnv, store: PaymentStore
) -> None:
    header, reason = MALFORMED[case]
    response = _ask(paywalled(chain_env, store), {"PAYMENT-SIGNATURE": header})
    assert response.status_code == 400
    assert response.json()["error"] == reason
    assert "paid-data" not in response.text
    assert store.records() == []


WRONG_TYPES = {
    "version as a string": lambda p: p.update(x402Version="2"),
    "value as a number": lambda p: p["payload"]["authorization"].update(value=10000),
    "nonce too short": lambda p: p["payload"]["authorization"].update(nonce="0x1234"),
    "signature not hex": lambda p: p["payload"].update(signature="0x" + "zz" * 65),
    "from not an address": lambda p: p["payload"]["authorization"].update(**{"from": "alice"}),
    "accepted missing": lambda p: p.pop("accepted"),
    "payload a list": lambda p: p.update(payload=[]),
    "amount negative": lambda p: p["accepted"].update(amount="-1"),
    "window reversed": lambda p: p["payload"]["authorization"].update(
        validAfter="99", validBefore="9"
    ),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_wrong_types_get_400_invalid_payment_payload(
    case: str, chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]
) -> None:
    payload = _valid_payload(accepts, chain_env.new_payer(0))
    WRONG_TYPES[case](payload)
    response = _ask(paywalled(chain_env, store), {"PAYMENT-SIGNATURE": _b64(json.dumps(payload))})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_payment_payload"
    assert response.json()["message"]


def _refused(chain_env: ChainEnv, store: PaymentStore, header: str, reason: str) -> dict[str, Any]:
    before = chain_env.token.balance_of(chain_env.merchant)
    response = _ask(paywalled(chain_env, store), {"PAYMENT-SIGNATURE": header})
    assert response.status_code == 402, response.text
    assert "paid-data" not in response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == reason
    assert challenge_of(response)["error"] == reason
    assert chain_env.token.balance_of(chain_env.merchant) == before
    return body


def test_wrong_network(chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]) -> None:
    header = sign_for({**accepts, "network": "eip155:8453"}, chain_env.new_payer())
    _refused(chain_env, store, header, "network_mismatch")


def test_wrong_asset(chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]) -> None:
    other_token = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    header = sign_for({**accepts, "asset": other_token}, chain_env.new_payer())
    _refused(chain_env, store, header, "asset_mismatch")


def test_wrong_pay_to(chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]) -> None:
    thief = LocalSigner.generate().address
    header = sign_for({**accepts, "payTo": thief}, chain_env.new_payer())
    _refused(chain_env, store, header, "pay_to_mismatch")
    # The authorization alone naming another payee is caught too.
    header = sign_for(accepts, chain_env.new_payer(), to=thief)
    _refused(chain_env, store, header, "pay_to_mismatch")


@pytest.mark.parametrize("value", [9_999, 10_001, 1])
def test_amount_other_than_the_price(
    value: int, chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]
) -> None:
    header = sign_for(accepts, chain_env.new_payer(), value=value)
    _refused(chain_env, store, header, "amount_mismatch")


def test_expired_window(chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]) -> None:
    now = int(time.time())
    header = sign_for(accepts, chain_env.new_payer(), now=now - 1_000, valid_for_s=100)
    _refused(chain_env, store, header, "authorization_expired")
    # Valid now, but not for long enough to be settled safely.
    header = sign_for(accepts, chain_env.new_payer(), valid_for_s=3)
    _refused(chain_env, store, header, "authorization_expired")


def test_not_yet_valid_window(
    chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]
) -> None:
    now = int(time.time())
    header = sign_for(accepts, chain_env.new_payer(), valid_after=now + 120, valid_for_s=240)
    _refused(chain_env, store, header, "authorization_not_yet_valid")


def test_bad_signature(chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]) -> None:
    header = sign_for(accepts, chain_env.new_payer(), signer=LocalSigner.generate())
    body = _refused(chain_env, store, header, "invalid_signature")
    assert "does not verify" in body["message"]


def test_replay_of_a_settled_payment(
    chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]
) -> None:
    header = sign_for(accepts, chain_env.new_payer())
    first = _ask(paywalled(chain_env, store), {"PAYMENT-SIGNATURE": header})
    assert first.status_code == 200
    _refused(chain_env, store, header, "nonce_already_used")
    # A fresh payment store (another paywall) is stopped by the chain itself.
    fresh = PaymentStore.sqlite(store.engine.url.database + ".other")  # type: ignore[operator]
    _refused(chain_env, fresh, header, "nonce_already_used")
    fresh.dispose()


def test_insufficient_balance(
    chain_env: ChainEnv, store: PaymentStore, accepts: dict[str, Any]
) -> None:
    header = sign_for(accepts, chain_env.new_payer(funds=9_999))
    _refused(chain_env, store, header, "insufficient_balance")
