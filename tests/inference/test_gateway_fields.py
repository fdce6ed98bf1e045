"""The gateway forwards only the fields it prices, charges for every sequence, and bounds its edge.

The gateway runs in front of the fake vLLM (``fake_vllm.py``) through its ASGI
app, paid with x402 ``exact`` on the memory chain: fields that multiply the
work beyond what the price covers (beam search, ``min_tokens``,
``ignore_eos``, ``prompt_logprobs``, a large ``top_logprobs``, anything not
on the allowlist) are refused with one line before a payment is asked for and
never reach the upstream; ``n`` and ``best_of`` are priced per sequence and
charged. A body nested past the bound is a 400, never a 500. The
``farthing inference gateway`` process answers only its own host names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.inference.gateway import usage_charge
from farthing.inference.quoting import CallQuote, ChatCall
from farthing.paywall.wire import unb64_json
from tests.inference.conftest import (
    PaidEnv,
    client_for,
    fake_upstream,
    fake_vllm_process,
    fast_settings,
)
from tests.inference.fake_vllm import MODEL, FakeVllm, prompt_tokens
from tests.inference.test_cli import gateway_process

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Is the farthing article worth 0.01 USDC?"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 20, **fields}


def paid_gateway(env: PaidEnv, fake: FakeVllm) -> Any:
    settings = fast_settings()
    return env.gateway(settings, fake_upstream(fake, settings))


def error(response: httpx.Response) -> tuple[int, str, str | None]:
    body = response.json()["error"]
    assert "\n" not in body["message"]
    return response.status_code, body["code"], body["param"]


ISSUE_17_BODY = chat(
    best_of=8,
    use_beam_search=True,
    min_tokens=20,
    ignore_eos=True,
    prompt_logprobs=20,
    top_logprobs=20,
    logprobs=True,
)


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"use_beam_search": True}, "unsupported_field", "use_beam_search"),
        ({"min_tokens": 20}, "unsupported_field", "min_tokens"),
        ({"ignore_eos": True}, "unsupported_field", "ignore_eos"),
        ({"prompt_logprobs": 20}, "unsupported_field", "prompt_logprobs"),
        ({"logprobs": True, "top_logprobs": 20}, "top_logprobs_over_limit", "top_logprobs"),
        ({"top_logprobs": "3"}, "invalid_top_logprobs", "top_logprobs"),
        ({"n": 9}, "n_over_limit", "n"),
        ({"best_of": 9}, "n_over_limit", "best_of"),
        ({"n": 3, "best_of": 2}, "best_of_below_n", "best_of"),
        ({"n": 0}, "invalid_n", "n"),
        ({"n": True}, "invalid_n", "n"),
        ({"best_of": 1.5}, "invalid_n", "best_of"),
        ({"frobnicate": 1}, "unsupported_field", "frobnicate"),
    ],
)
async def test_unpriced_work_is_refused_before_payment_and_never_forwarded(
    paid_env: PaidEnv, fake_vllm: FakeVllm, fields: dict[str, Any], code: str, param: str
) -> None:
    async with client_for(paid_gateway(paid_env, fake_vllm)) as client:
        quoted = await client.post("/v1/price", json=chat(**fields))
        called = await client.post("/v1/chat/completions", json=chat(**fields))
    assert error(quoted) == (400, code, param)
    assert error(called) == (400, code, param)  # not a 402: nothing is asked for it
    assert fake_vllm.chat_bodies == []


async def test_the_issue_17_body_is_refused_with_one_line(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    async with client_for(paid_gateway(paid_env, fake_vllm)) as client:
        called = await client.post("/v1/chat/completions", json=ISSUE_17_BODY)
    status, code, _ = error(called)
    assert (status, code) == (400, "unsupported_field")
    message = called.json()["error"]["message"]
    for name in ("use_beam_search", "min_tokens", "ignore_eos", "prompt_logprobs"):
        assert name in message
    assert fake_vllm.chat_bodies == []


@pytest.mark.parametrize(("fields", "sequences"), [({"n": 3}, 3), ({"n": 2, "best_of": 4}, 4)])
async def test_n_and_best_of_are_priced_per_sequence_and_charged(
    paid_env: PaidEnv, fake_vllm: FakeVllm, fields: dict[str, Any], sequences: int
) -> None:
    merchant = paid_env.merchant
    async with client_for(paid_gateway(paid_env, fake_vllm)) as client:
        one = (await client.post("/v1/price", json=chat())).json()
        many = (await client.post("/v1/price", json=chat(**fields))).json()
        assert one["tokens"] == prompt_tokens(MESSAGES) + 20
        assert many["tokens"] == prompt_tokens(MESSAGES) + sequences * 20
        assert many["sequences"] == sequences
        per_1k = many["price_per_1k_atomic"]
        assert int(many["amount"]) == -(-many["tokens"] * per_1k // 1000) > int(one["amount"])
        challenge = await client.post("/v1/chat/completions", json=chat(**fields))
        assert challenge.status_code == 402
        terms = unb64_json(challenge.headers["payment-required"])["accepts"][0]
        assert int(terms["amount"]) == int(many["amount"])
        header, amount = paid_env.pay(challenge)
        paid = await client.post(
            "/v1/chat/completions", json=chat(**fields), headers={"payment-signature": header}
        )
    assert paid.status_code == 200, paid.text
    assert paid_env.balance(merchant) == amount == int(many["amount"])
    (forwarded,) = fake_vllm.chat_bodies
    assert {k: forwarded[k] for k in fields} == fields


async def test_allowed_fields_are_forwarded_and_nothing_else(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    fields = {"temperature": 0.5, "seed": 7, "stop": ["\n"], "logprobs": True, "top_logprobs": 2}
    async with client_for(paid_gateway(paid_env, fake_vllm)) as client:
        challenge = await client.post("/v1/chat/completions", json=chat(**fields))
        header, _ = paid_env.pay(challenge)
        paid = await client.post(
            "/v1/chat/completions", json=chat(**fields), headers={"payment-signature": header}
        )
    assert paid.status_code == 200, paid.text
    (forwarded,) = fake_vllm.chat_bodies
    assert set(forwarded) == {
        "model", "messages", "max_tokens", "max_completion_tokens", *fields,
    }  # fmt: skip
    assert {k: forwarded[k] for k in fields} == fields


async def test_a_deeply_nested_body_is_a_400_not_a_500(
    paid_env: PaidEnv, fake_vllm: FakeVllm
) -> None:
    deep = b'{"model":"' + MODEL.encode() + b'","messages":' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with client_for(paid_gateway(paid_env, fake_vllm)) as client:
        called = await client.post("/v1/chat/completions", content=deep)
        quoted = await client.post("/v1/price", content=deep)
    assert error(called)[:2] == (400, "json_too_deep")
    assert error(quoted)[:2] == (400, "json_too_deep")
    assert fake_vllm.chat_bodies == []


def test_metered_usage_is_not_believed_when_best_of_hides_sequences() -> None:
    call = ChatCall({"model": MODEL}, MODEL, 10, 20, "d", choices=2, sequences=4)
    quote = CallQuote(call, per_1k_atomic=1_000, amount=90, expires_at_s=0.0)
    usage = b'{"usage":{"prompt_tokens":10,"completion_tokens":8}}'
    assert usage_charge(usage, quote) is None  # the ceiling is charged
    shown = CallQuote(ChatCall({}, MODEL, 10, 20, "d", choices=2, sequences=2), 1_000, 50, 0.0)
    assert usage_charge(usage, shown) == 18


def test_the_gateway_process_answers_only_its_own_host_names(tmp_path: Path) -> None:
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, "--free"], tmp_path) as (ready, _process),
    ):
        url = ready["url"]
        assert httpx.get(f"{url}/v1/price", timeout=10).status_code == 200
        local = httpx.get(f"{url}/v1/price", headers={"host": "localhost"}, timeout=10)
        assert local.status_code == 200
        rebound = httpx.get(f"{url}/v1/price", headers={"host": "evil.example"}, timeout=10)
        assert rebound.status_code == 421
        body = chat(max_tokens=4)
        posted = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"host": "evil.example"}, timeout=10
        )
        assert posted.status_code == 421
