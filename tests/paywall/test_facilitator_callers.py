"""``farthing facilitator serve`` names who may make its relayer pay gas, and settles only its own tokens and payees.

Each test starts the real CLI as a process on a module anvil and talks to it
over HTTP on 127.0.0.1. A wallet holding 5 atomic units sends five 1-unit
settles to itself (the junk that made the relayer pay gas in issue #17): with
a payee allowlist they are all refused and the relayer sends nothing, while a
payment to the listed payee settles. A token the facilitator was not set up
for is refused the same way; with no token named on a chain whose token it
cannot know, and bound beyond loopback with no caller rule, it refuses to
start with one line. Host names other than its own get 421, bodies that are
not JSON or nest too deep get 4xx.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall.wire import PaymentRequirements, unb64_json
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import free_port
from tests.paywall.conftest import ChainEnv, sign_for
from tests.paywall.facilitator_process import (
    API_KEY,
    private_file,
    refused_start,
    running_facilitator,
)

pytestmark = pytest.mark.anvil


def _relayer_key(env: ChainEnv, tmp_path: Path) -> Path:
    return private_file(tmp_path / "relayer.key", env.relayer.private_key.get_secret_value())


def _body(env: ChainEnv, payer: LocalSigner, pay_to: str, amount: int, asset: str = "") -> Any:
    requirements = PaymentRequirements(
        network=env.chain.network,
        asset=asset or env.asset.address,
        amount=amount,
        pay_to=pay_to,
        max_timeout_seconds=300,
        token_name=env.asset.name,
        token_version=env.asset.version,
    )
    header = sign_for(requirements.to_wire(), payer)
    return {
        "x402Version": 2,
        "paymentPayload": unb64_json(header),
        "paymentRequirements": requirements.to_wire(),
    }


def _sent(env: ChainEnv) -> int:
    return int(env.chain.w3.eth.get_transaction_count(env.relayer.address))


def test_junk_settles_to_oneself_cost_the_relayer_nothing_with_a_payee_list(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    key = _relayer_key(env, tmp_path)
    griefer = env.new_payer(funds=5)
    before = _sent(env)
    scope = ("--asset", env.asset.address, "--payee", env.merchant)
    with (
        running_facilitator(env.chain.rpc_url or "", key, tmp_path / "data", *scope) as fac,
        httpx.Client(base_url=fac.url, timeout=60) as http,
    ):
        for _ in range(5):
            answer = http.post("/settle", json=_body(env, griefer, griefer.address, 1))
            assert answer.status_code == 200, answer.text
            assert answer.json()["success"] is False
            assert answer.json()["errorReason"] == "payee_not_allowed"
            checked = http.post("/verify", json=_body(env, griefer, griefer.address, 1))
            assert checked.json()["invalidReason"] == "payee_not_allowed"
        assert _sent(env) == before
        assert env.token.balance_of(griefer.address) == 5
        # The listed payee is paid as before.
        paid = http.post("/settle", json=_body(env, griefer, env.merchant, 2))
        assert paid.json()["success"] is True, paid.text
    assert env.token.balance_of(griefer.address) == 3
    assert _sent(env) == before + 1


def test_a_token_it_was_not_set_up_for_is_refused(chain_env: ChainEnv, tmp_path: Path) -> None:
    env = chain_env
    key = _relayer_key(env, tmp_path)
    junk_asset = deploy_stablecoin(env.chain, sender=env.owner)
    junk = Stablecoin(env.chain, junk_asset)
    assert junk.configure_minter(env.owner.address, sender=env.owner).ok
    griefer = LocalSigner.generate()
    assert junk.mint(griefer.address, 5, sender=env.owner).ok
    before = _sent(env)
    with (
        running_facilitator(
            env.chain.rpc_url or "", key, tmp_path / "data", "--asset", env.asset.address
        ) as fac,
        httpx.Client(base_url=fac.url, timeout=60) as http,
    ):
        for _ in range(5):
            body = _body(env, griefer, griefer.address, 1, asset=junk_asset.address)
            answer = http.post("/settle", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json().get("errorReason") == "asset_not_supported", answer.text
    assert _sent(env) == before
    assert junk.balance_of(griefer.address) == 5


def test_with_no_token_named_on_a_chain_without_a_known_one_it_refuses_to_start(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    key = _relayer_key(chain_env, tmp_path)
    code, err = refused_start(chain_env.chain.rpc_url or "", key, tmp_path / "data")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert "--asset" in lines[0] and chain_env.chain.network in lines[0]


def test_off_loopback_it_needs_a_caller_rule(chain_env: ChainEnv, tmp_path: Path) -> None:
    key = _relayer_key(chain_env, tmp_path)
    code, err = refused_start(
        chain_env.chain.rpc_url or "", key, tmp_path / "data",
        "--host", "0.0.0.0", "--public-url", f"http://127.0.0.1:{free_port()}",
        "--asset", chain_env.asset.address,
    )  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert "--api-key-file" in lines[0] and "--payee" in lines[0]


def test_off_loopback_with_an_api_key_it_serves_only_key_holders(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    key = _relayer_key(env, tmp_path)
    api_key = private_file(tmp_path / "api.key", API_KEY)
    port = free_port()
    options = (
        "--host", "0.0.0.0", "--port", str(port), "--public-url", f"http://127.0.0.1:{port}",
        "--asset", env.asset.address, "--api-key-file", str(api_key),
    )  # fmt: skip
    with (
        running_facilitator(env.chain.rpc_url or "", key, tmp_path / "data", *options),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        payer = env.new_payer(funds=5)
        anonymous = http.post("/settle", json=_body(env, payer, env.merchant, 1))
        assert anonymous.status_code == 401
        keyed = http.post(
            "/settle",
            json=_body(env, payer, env.merchant, 1),
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert keyed.json()["success"] is True, keyed.text


def test_the_edge_refuses_other_hosts_other_bodies_and_deep_json(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    key = _relayer_key(env, tmp_path)
    with (
        running_facilitator(
            env.chain.rpc_url or "", key, tmp_path / "data", "--asset", env.asset.address
        ) as fac,
        httpx.Client(base_url=fac.url, timeout=60) as http,
    ):
        rebound = http.get("/supported", headers={"Host": "attacker.example"})
        assert rebound.status_code == 421
        assert http.get("/supported", headers={"Host": "localhost"}).status_code == 200
        # A page's no-cors POST can only send a "simple" content type.
        text = json.dumps(_body(env, env.new_payer(funds=1), env.merchant, 1))
        simple = http.post("/settle", content=text, headers={"Content-Type": "text/plain"})
        assert simple.status_code == 415
        deep = '{"x402Version":2,"paymentPayload":' + "[" * 40 + "]" * 40 + "}"
        nested = http.post("/verify", content=deep, headers={"Content-Type": "application/json"})
        assert nested.status_code == 400 and nested.json()["error"] == "json_too_deep"
