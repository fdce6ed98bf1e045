"""An authorization valid for longer than the route's maxTimeoutSeconds (plus the stated skew) is refused, before anything is settled.

Real anvil, our token, the middleware over ``httpx.ASGITransport`` and the
facilitator's HTTP API: an authorization valid for ten years, or for a week
against a 300-second ``maxTimeoutSeconds``, is answered 402 (or
``isValid:false`` / ``success:false``) with ``authorization_valid_too_long``,
the handler never runs and the payer keeps the money. A window of exactly
``maxTimeoutSeconds``, which the official x402 clients and Farthing's payer
sign, and one just inside the skew, still settle.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from farthing.paywall import facilitator_app
from farthing.paywall.facilitator.local import VALID_BEFORE_SKEW_S
from farthing.paywall.wire import PaymentRequirements, unb64_json
from farthing.wallet.eip3009 import Authorization
from tests.paywall.conftest import (
    PAYER_FUNDS,
    ChainEnv,
    asgi_client,
    challenge_of,
    header_for,
    paywalled,
    run,
    sign_for,
)

pytestmark = pytest.mark.anvil

TEN_YEARS_S = 10 * 365 * 24 * 3600


def _header_valid_for(accepts: dict[str, Any], payer: Any, seconds: int) -> str:
    requirements = PaymentRequirements.from_wire(accepts)
    now = int(time.time())
    authorization = Authorization(
        from_address=payer.address,
        to=requirements.pay_to,
        value=requirements.amount,
        valid_after=0,
        valid_before=now + seconds,
        nonce=secrets.token_bytes(32),
    )
    return header_for(authorization, requirements, payer)


def _get(app: Any, header: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        async with asgi_client(app) as client:
            headers = {"PAYMENT-SIGNATURE": header} if header else {}
            return await client.get("/api/data", headers=headers)

    response: httpx.Response = run(go())
    return response


@pytest.mark.parametrize("seconds", [TEN_YEARS_S, 7 * 24 * 3600, 300 + VALID_BEFORE_SKEW_S + 30])
def test_the_middleware_refuses_a_window_longer_than_max_timeout(
    chain_env: ChainEnv, store: Any, seconds: int
) -> None:
    app = paywalled(chain_env, store)
    accepts = challenge_of(_get(app))["accepts"][0]
    assert accepts["maxTimeoutSeconds"] == 300
    payer = chain_env.new_payer()
    response = _get(app, _header_valid_for(accepts, payer, seconds))
    assert response.status_code == 402
    assert response.json()["error"] == "authorization_valid_too_long"
    assert challenge_of(response)["error"] == "authorization_valid_too_long"
    assert "paid-data" not in response.text
    assert store.records() == []
    assert chain_env.token.balance_of(payer.address) == PAYER_FUNDS


@pytest.mark.parametrize("seconds", [300, 300 + VALID_BEFORE_SKEW_S - 5])
def test_a_window_of_max_timeout_still_settles(
    chain_env: ChainEnv, store: Any, seconds: int
) -> None:
    app = paywalled(chain_env, store)
    accepts = challenge_of(_get(app))["accepts"][0]
    response = _get(app, _header_valid_for(accepts, chain_env.new_payer(), seconds))
    assert response.status_code == 200, response.text
    assert unb64_json(response.headers["payment-response"])["success"] is True


def test_the_facilitator_api_refuses_a_ten_year_window(chain_env: ChainEnv) -> None:
    requirements = PaymentRequirements(
        network=chain_env.chain.network,
        asset=chain_env.asset.address,
        amount=10_000,
        pay_to=chain_env.merchant,
        max_timeout_seconds=60,
        token_name=chain_env.asset.name,
        token_version=chain_env.asset.version,
    )
    payer = chain_env.new_payer()
    header = _header_valid_for(requirements.to_wire(), payer, TEN_YEARS_S)
    body = {
        "x402Version": 2,
        "paymentPayload": unb64_json(header),
        "paymentRequirements": requirements.to_wire(),
    }
    app = facilitator_app(chain_env.facilitator())

    async def go() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f") as client:
            return (
                await client.post("/verify", json=body),
                await client.post("/settle", json=body),
            )

    verified, settled = run(go())
    assert verified.status_code == 200 and verified.json()["isValid"] is False
    assert verified.json()["invalidReason"] == "authorization_valid_too_long"
    assert settled.status_code == 200 and settled.json()["success"] is False
    assert settled.json()["errorReason"] == "authorization_valid_too_long"
    assert chain_env.token.balance_of(payer.address) == PAYER_FUNDS
    # The same terms with the window the x402 clients sign (now + maxTimeoutSeconds) settle.
    ok = sign_for(requirements.to_wire(), payer, valid_for_s=60)
    body["paymentPayload"] = unb64_json(ok)

    async def settle() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f") as client:
            return await client.post("/settle", json=body)

    assert run(settle()).json()["success"] is True
