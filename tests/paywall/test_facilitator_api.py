"""The facilitator's HTTP API answers every payment outcome with 200 and a reason, and guards itself.

The API app runs over ``httpx.ASGITransport`` with a real ``LocalFacilitator``
on anvil. Good payments verify and settle; unparseable payloads, replays and
refusals are 200 with ``isValid``/``success`` false; only non-payment problems
(no token, not JSON, too large) get other statuses. Our ``RemoteFacilitator``
is checked against the same app.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from farthing.paywall import RemoteFacilitator, facilitator_app
from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.wire import PaymentPayload, PaymentRequirements, unb64_json
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, run, sign_for

pytestmark = pytest.mark.anvil

TOKEN = "a-long-enough-bearer-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _requirements(env: ChainEnv) -> PaymentRequirements:
    return PaymentRequirements(
        network=env.chain.network,
        asset=env.asset.address,
        amount=PRICE_ATOMIC,
        pay_to=env.merchant,
        max_timeout_seconds=300,
        token_name=env.asset.name,
        token_version=env.asset.version,
    )


def _body(env: ChainEnv) -> dict[str, Any]:
    requirements = _requirements(env)
    header = sign_for(requirements.to_wire(), env.new_payer())
    payload: dict[str, Any] = unb64_json(header)
    return {
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": requirements.to_wire(),
    }


def _call(env: ChainEnv, method: str, path: str, **kwargs: Any) -> httpx.Response:
    app = facilitator_app(env.facilitator(), token=TOKEN)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f") as client:
            return await client.request(method, path, **kwargs)

    result: httpx.Response = run(go())
    return result


def test_supported_lists_the_connected_chain(chain_env: ChainEnv) -> None:
    response = _call(chain_env, "GET", "/supported", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "kinds": [
            {"x402Version": 2, "scheme": "exact", "network": chain_env.chain.network},
            {"x402Version": 2, "scheme": "batch-settlement", "network": chain_env.chain.network},
            {
                "x402Version": 2,
                "scheme": "upto",
                "network": chain_env.chain.network,
                "extra": {"facilitatorAddress": chain_env.relayer.address},
            },
        ],
        "extensions": ["eip2612GasSponsoring", "erc20ApprovalGasSponsoring"],
        "signers": {"eip155:*": [chain_env.relayer.address]},
    }


def test_verify_then_settle_then_replay(chain_env: ChainEnv) -> None:
    body = _body(chain_env)
    verified = _call(chain_env, "POST", "/verify", json=body, headers=AUTH)
    assert verified.status_code == 200 and verified.json()["isValid"] is True
    settled = _call(chain_env, "POST", "/settle", json=body, headers=AUTH)
    assert settled.status_code == 200, settled.text
    result = settled.json()
    assert result["success"] is True and result["network"] == chain_env.chain.network
    assert result["transaction"].startswith("0x") and result["amount"] == str(PRICE_ATOMIC)
    replay = _call(chain_env, "POST", "/verify", json=body, headers=AUTH)
    assert replay.status_code == 200
    assert (replay.json()["isValid"], replay.json()["invalidReason"]) == (
        False,
        "nonce_already_used",
    )
    again = _call(chain_env, "POST", "/settle", json=body, headers=AUTH)
    assert again.status_code == 200
    assert (again.json()["success"], again.json()["errorReason"]) == (False, "nonce_already_used")


@pytest.mark.parametrize("path", ["/verify", "/settle"])
def test_unparseable_payments_are_200_with_a_reason(chain_env: ChainEnv, path: str) -> None:
    body = _body(chain_env)
    body["paymentPayload"]["payload"]["signature"] = "0x1234"
    response = _call(chain_env, "POST", path, json=body, headers=AUTH)
    assert response.status_code == 200
    data = response.json()
    flag = "isValid" if path == "/verify" else "success"
    reason = "invalidReason" if path == "/verify" else "errorReason"
    assert data[flag] is False and data[reason] == "invalid_payload"


def test_non_payment_problems_use_other_statuses(chain_env: ChainEnv) -> None:
    assert _call(chain_env, "POST", "/verify", json=_body(chain_env)).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-at-all-x"}
    assert _call(chain_env, "GET", "/supported", headers=wrong).status_code == 401
    as_json = {**AUTH, "Content-Type": "application/json"}
    not_json = _call(chain_env, "POST", "/verify", content=b"{nope", headers=as_json)
    assert not_json.status_code == 400 and not_json.json()["error"] == "invalid_json"
    huge = _call(
        chain_env, "POST", "/settle", content=b"[" + b"1," * 40_000 + b"1]", headers=as_json
    )
    assert huge.status_code == 413


def test_remote_facilitator_speaks_to_the_api(chain_env: ChainEnv) -> None:
    app = facilitator_app(chain_env.facilitator(), token=TOKEN)
    body = _body(chain_env)
    payload = PaymentPayload.from_wire(body["paymentPayload"])
    requirements = _requirements(chain_env)

    async def go() -> Any:
        remote = RemoteFacilitator("http://f", token=TOKEN, transport=httpx.ASGITransport(app=app))
        supported = await remote.supported()
        verified = await remote.verify(payload, requirements)
        settled = await remote.settle(payload, requirements)
        await remote.aclose()
        return supported, verified, settled

    supported, verified, settled = run(go())
    assert supported.networks == (chain_env.chain.network,)
    assert verified.valid and settled.success


def test_remote_facilitator_that_does_not_answer_is_unavailable(chain_env: ChainEnv) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    remote = RemoteFacilitator(url, timeout_s=2.0)
    body = _body(chain_env)
    payload = PaymentPayload.from_wire(body["paymentPayload"])

    async def go() -> None:
        try:
            await remote.verify(payload, _requirements(chain_env))
        finally:
            await remote.aclose()

    with pytest.raises(FacilitatorUnavailableError, match=url):
        run(go())
