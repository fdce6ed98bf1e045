"""``farthing facilitator serve``'s API speaks ``upto``: /supported, /verify, /settle, bad input.

The app runs over ``httpx.ASGITransport`` with a real ``LocalFacilitator`` on
the memory chain and anvil. ``/supported`` lists ``upto`` with the
``facilitatorAddress`` payers bind into the witness and both gas-sponsoring
extensions; ``/verify`` takes the ceiling, ``/settle`` the actual charge
(settle-time verification), a charge of 0 answers success with an empty
transaction; every malformed body is a 200 with a reason, never a 5xx, and
moves nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from farthing.paywall import facilitator_app
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.schemes.upto import types as codes
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv


def _post(env: UptoEnv, path: str, body: Any) -> httpx.Response:
    app = facilitator_app(LocalFacilitator(env.chain, env.relayer))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            if path == "/supported":
                return await client.get(path)
            return await client.post(path, json=body)

    return asyncio.run(go())


def test_supported_names_the_facilitator_address(upto_env: UptoEnv) -> None:
    answer = _post(upto_env, "/supported", None).json()
    upto = [k for k in answer["kinds"] if k["scheme"] == "upto"]
    assert upto == [
        {
            "x402Version": 2,
            "scheme": "upto",
            "network": upto_env.chain.network,
            "extra": {"facilitatorAddress": upto_env.relayer.address},
        }
    ]
    assert {"eip2612GasSponsoring", "erc20ApprovalGasSponsoring"} <= set(answer["extensions"])


def test_verify_then_settle_the_actual_charge_over_http(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay().to_wire()
    offer = env.offer().to_wire()
    verified = _post(
        env, "/verify", {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": offer}
    )
    assert verified.status_code == 200 and verified.json()["isValid"] is True
    charge = env.offer().charging(1_234).to_wire()
    settled = _post(
        env, "/settle", {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": charge}
    )
    body = settled.json()
    assert body["success"] is True and body["amount"] == "1234" and body["transaction"]
    assert env.balance(env.payee) == 1_234


def test_a_zero_charge_over_http_has_no_transaction(upto_env: UptoEnv) -> None:
    env = upto_env
    body = {
        "x402Version": 2,
        "paymentPayload": env.pay().to_wire(),
        "paymentRequirements": env.offer().charging(0).to_wire(),
    }
    answer = _post(env, "/settle", body).json()
    assert (answer["success"], answer["transaction"], answer["amount"]) == (True, "", "0")
    assert env.balance(env.payer) == FUNDS


def _mangled(env: UptoEnv) -> list[tuple[Any, Any]]:
    payment, offer = env.pay().to_wire(), env.offer().to_wire()
    cases: list[tuple[Any, Any]] = []
    for key in ("signature", "permit2Authorization"):
        broken = {**payment, "payload": {**payment["payload"], key: None}}
        cases.append((broken, offer))
    auth = payment["payload"]["permit2Authorization"]
    for field, value in [
        ("nonce", "-1"), ("deadline", 1.5), ("from", "0xnope"), ("permitted", []),
        ("witness", {"to": auth["witness"]["to"]}), ("nonce", "9" * 100),
    ]:  # fmt: skip
        broken = {
            **payment,
            "payload": {**payment["payload"], "permit2Authorization": {**auth, field: value}},
        }
        cases.append((broken, offer))
    cases.append((payment, {**offer, "amount": "1e6"}))
    cases.append((payment, {**offer, "payTo": "0x12"}))
    cases.append((payment, {**offer, "extra": "nope"}))
    cases.append(
        ({**payment, "extensions": {"eip2612GasSponsoring": {"info": {"from": 1}}}}, offer)
    )
    cases.append(({**payment, "extensions": {"erc20ApprovalGasSponsoring": []}}, offer))
    cases.append(({**payment, "x402Version": 1}, offer))
    return cases


@pytest.mark.parametrize("path", ["/verify", "/settle"])
def test_malformed_upto_bodies_are_refusals_not_errors(upto_env: UptoEnv, path: str) -> None:
    env = upto_env
    for payment, offer in _mangled(env):
        body = {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": offer}
        response = _post(env, path, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer.get("isValid") is not True and answer.get("success") is not True
        reason = answer.get("invalidReason") or answer.get("errorReason")
        assert isinstance(reason, str) and reason
    assert env.balance(env.payer) == FUNDS and env.balance(env.payee) == 0


def test_an_over_ceiling_charge_over_http_is_the_specs_code(upto_env: UptoEnv) -> None:
    env = upto_env
    body = {
        "x402Version": 2,
        "paymentPayload": env.pay().to_wire(),
        "paymentRequirements": env.offer().charging(CEILING + 1).to_wire(),
    }
    answer = _post(env, "/settle", body).json()
    assert answer["errorReason"] == codes.ERR_SETTLEMENT_EXCEEDS_AMOUNT
