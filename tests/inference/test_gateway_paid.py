"""The paid gateway charges exactly its quote with x402 ``exact``, books it, and never charges a failed call.

Real pieces throughout: the paywall middleware and its local facilitator
settling EIP-3009 authorizations on the in-process memory chain, a SQLite
payment store, and the merchant's ledger; only vLLM is the fake (the real one
is in ``test_vllm.py``). Money is checked on-chain (token balances) and in the
books (the merchant's revenue report).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from farthing.paywall.wire import unb64_json
from tests.inference.conftest import (
    PaidEnv,
    client_for,
    fake_upstream,
    fake_vllm_process,
    fast_settings,
)
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens
from tests.raw_asgi import raw_asgi_request

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Is the farthing article worth 0.01 USDC?"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 20, **fields}


def paid_gateway(env: PaidEnv, fake: FakeVllm, **overrides: Any) -> Any:
    settings = fast_settings(**overrides)
    return env.gateway(settings, fake_upstream(fake, settings))


async def test_a_call_is_quoted_then_charged_exactly_and_booked(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    payer, merchant = paid_env.payer.address, paid_env.merchant
    before = paid_env.balance(payer)
    async with client_for(app) as client:
        quote = (await client.post("/v1/price", json=chat())).json()
        challenge = await client.post("/v1/chat/completions", json=chat())
        assert challenge.status_code == 402
        assert fake_vllm.chat_bodies == [], "the model ran before it was paid for"
        terms = unb64_json(challenge.headers["payment-required"])["accepts"][0]
        tokens = prompt_tokens(MESSAGES) + 20
        assert quote["tokens"] == tokens
        assert (
            int(terms["amount"])
            == int(quote["amount"])
            == -(-tokens * quote["price_per_1k_atomic"] // 1000)
        )
        assert terms["payTo"] == merchant
        assert terms["asset"] == paid_env.asset.address
        header, amount = paid_env.pay(challenge)
        paid = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
    assert paid.status_code == 200, paid.text
    assert paid.json()["choices"][0]["finish_reason"] == "stop"
    receipt = unb64_json(paid.headers["payment-response"])
    assert receipt["success"] is True
    assert int(paid.headers["x-farthing-price-atomic"]) == amount
    assert paid_env.balance(payer) == before - amount
    assert paid_env.balance(merchant) == amount
    assert paid_env.revenue() == (amount, 1)
    assert len(fake_vllm.chat_bodies) == 1


async def test_the_quoted_price_holds_when_demand_rises_before_payment(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    async with client_for(app) as client:
        challenge = await client.post("/v1/chat/completions", json=chat())
        header, amount = paid_env.pay(challenge)
        fake_vllm.requests_waiting = 30  # the demand factor jumps to its maximum
        dearer = (await client.post("/v1/price", json=chat(max_tokens=21))).json()
        paid = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
    assert int(dearer["amount"]) > amount
    assert paid.status_code == 200, paid.text
    assert paid_env.balance(paid_env.merchant) == amount


async def test_refused_requests_ask_for_no_payment(paid_env: PaidEnv, fake_vllm: FakeVllm) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    async with client_for(app) as client:
        over = await client.post("/v1/chat/completions", json=chat(max_tokens=10_000))
        unknown = await client.post("/v1/chat/completions", json=chat(model="gpt-9"))
    assert over.status_code == 400 and "payment-required" not in over.headers
    assert unknown.status_code == 404 and "payment-required" not in unknown.headers


async def test_a_failed_upstream_is_never_charged_and_the_payment_stays_usable(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    before = paid_env.balance(paid_env.payer.address)
    async with client_for(app) as client:
        challenge = await client.post("/v1/chat/completions", json=chat())
        header, amount = paid_env.pay(challenge)
        fake_vllm.mode = "error"
        failed = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
        assert failed.status_code == 502
        assert failed.json()["error"]["code"] == "upstream_error"
        assert "payment-response" not in failed.headers
        assert paid_env.balance(paid_env.payer.address) == before
        assert paid_env.revenue() == (0, 0)
        # The payment was released unsettled: the same one pays once the model is back.
        fake_vllm.mode = "ok"
        retried = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
        replayed = await client.post(
            "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
        )
    assert retried.status_code == 200, retried.text
    assert replayed.status_code == 402  # the same payment never pays twice
    assert paid_env.balance(paid_env.payer.address) == before - amount
    assert paid_env.revenue() == (amount, 1)


async def test_a_model_server_that_dies_mid_request_is_never_charged(paid_env: PaidEnv) -> None:
    before = paid_env.balance(paid_env.payer.address)
    with fake_vllm_process("die") as (url, process):
        app = paid_env.gateway(fast_settings(upstream_url=url))
        async with client_for(app) as client:
            challenge = await client.post("/v1/chat/completions", json=chat())
            assert challenge.status_code == 402
            header, _ = paid_env.pay(challenge)
            paid = await client.post(
                "/v1/chat/completions", json=chat(), headers={"payment-signature": header}
            )
            assert process.wait(timeout=10) == -9  # killed by the request it was serving
        await app.aclose()
    assert (paid.status_code, paid.json()["error"]["code"]) == (502, "upstream_failed")
    assert "payment-response" not in paid.headers
    assert paid_env.balance(paid_env.payer.address) == before
    assert paid_env.balance(paid_env.merchant) == 0
    assert paid_env.revenue() == (0, 0)


async def test_a_payment_for_a_different_request_is_refused(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    async with client_for(app) as client:
        cheap = await client.post("/v1/chat/completions", json=chat(max_tokens=1))
        header, _ = paid_env.pay(cheap)
        # a payment for a 1-token answer does not buy 60 tokens
        dear = await client.post(
            "/v1/chat/completions", json=chat(max_tokens=60), headers={"payment-signature": header}
        )
    assert dear.status_code == 402
    assert unb64_json(dear.headers["payment-required"])["error"] == "amount_mismatch"
    assert fake_vllm.chat_bodies == []
    assert paid_env.balance(paid_env.merchant) == 0


async def test_the_price_sheet_names_the_asset_and_payee(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    async with client_for(app) as client:
        sheet = (await client.get("/v1/price")).json()
        models = await client.get("/v1/models")
    assert sheet["asset"] == paid_env.asset.address
    assert sheet["network"] == paid_env.asset.network
    assert sheet["pay_to"] == paid_env.merchant
    assert sheet["asset_decimals"] == 6
    assert models.status_code == 200  # listing models is free


async def test_odd_spellings_of_the_chat_path_are_quoted_or_refused_never_a_500(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    app = paid_gateway(paid_env, fake_vllm)
    body = json.dumps(chat()).encode()
    headers = [(b"content-type", b"application/json")]
    for method, target in [
        ("POST", b"//v1/chat/completions"),
        ("POST", b"/v1//chat/completions"),
        ("POST", b"/v1/x/../chat/completions"),
        ("post", b"/v1/chat/completions"),
        ("Post", b"/v1/./chat/completions/"),
    ]:
        status, answer, content = await raw_asgi_request(
            app, method, target, headers=headers, body=body
        )
        assert status == 402, (method, target, status, content[:200])
        assert "payment-required" in answer
    status, _, content = await raw_asgi_request(
        app, "POST", b"/v1/%2e%2e/v1/chat/completions", headers=headers, body=body
    )
    assert status == 400 and json.loads(content)["error"] == "encoded_path_separator"
    assert fake_vllm.chat_bodies == [], "the model ran before it was paid for"
