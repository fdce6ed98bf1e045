"""``farthing facilitator serve`` settles one payment once however many copies race it, and never pays a payee or an amount the authorization did not name.

A real facilitator process (API key, ``--payee``, ``--asset``) on a module
anvil. Eight copies of one ``/settle`` body and two ``/verify`` sent at
once: exactly one settles, one relayer transaction, the payee gets the
amount once; three replays afterwards send nothing. A body whose
requirements ask 1 unit for an authorization of 10,000 is
``amount_mismatch``, one whose authorization pays another address is
``pay_to_mismatch``: nothing is sent for either.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall.wire import PaymentRequirements, unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import ChainEnv, chain_env, sign_for
from tests.paywall.facilitator_process import API_KEY, private_file, running_facilitator

pytestmark = pytest.mark.anvil
__all__ = ["chain_env"]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _requirements(env: ChainEnv, amount: int) -> PaymentRequirements:
    return PaymentRequirements(
        network=env.chain.network, asset=env.asset.address, amount=amount, pay_to=env.merchant,
        max_timeout_seconds=300, token_name=env.asset.name, token_version=env.asset.version,
    )  # fmt: skip


def _body(header: str, requirements: PaymentRequirements) -> dict[str, Any]:
    return {
        "x402Version": 2,
        "paymentPayload": unb64_json(header),
        "paymentRequirements": requirements.to_wire(),
    }


def test_copies_settle_once_and_mismatches_send_nothing(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    relayer = env.chain.dev_accounts()[5]
    key = private_file(tmp_path / "relayer.key", relayer.private_key.get_secret_value())
    api_key = private_file(tmp_path / "api.key", API_KEY)
    payer = env.new_payer(funds=1_000_000)
    requirements = _requirements(env, 10_000)
    body = _body(sign_for(requirements.to_wire(), payer), requirements)

    def sent() -> int:
        return int(env.chain.w3.eth.get_transaction_count(relayer.address))

    options = (
        "--api-key-file", str(api_key), "--payee", env.merchant, "--asset", env.asset.address,
    )  # fmt: skip
    with running_facilitator(env.chain.rpc_url or "", key, tmp_path / "data", *options) as fac:

        def post(path: str) -> dict[str, Any]:
            with httpx.Client(base_url=fac.url, timeout=90) as http:
                answer = http.post(path, json=body, headers=AUTH)
            assert answer.status_code == 200, answer.text
            out: dict[str, Any] = answer.json()
            return out

        before, merchant_before = sent(), env.token.balance_of(env.merchant)
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(post, ["/settle"] * 8 + ["/verify"] * 2))
        settled = [a for a in answers[:8] if a["success"]]
        assert len(settled) == 1, answers
        assert sent() == before + 1
        assert env.token.balance_of(env.merchant) - merchant_before == 10_000
        for _ in range(3):
            assert post("/settle")["success"] is False
        assert sent() == before + 1

        with httpx.Client(base_url=fac.url, timeout=90) as http:
            other = env.new_payer(funds=1_000_000)
            cheap = _requirements(env, 1)
            header = sign_for(requirements.to_wire(), other)
            mismatch = http.post("/settle", json=_body(header, cheap), headers=AUTH).json()
            assert mismatch["errorReason"] == "amount_mismatch", mismatch
            thief = LocalSigner.generate().address
            stolen = sign_for(requirements.to_wire(), other, to=thief)
            redirected = http.post("/settle", json=_body(stolen, requirements), headers=AUTH)
            assert redirected.json()["errorReason"] == "pay_to_mismatch", redirected.text
        assert sent() == before + 1
        assert env.token.balance_of(thief) == 0
        assert env.token.balance_of(other.address) == 1_000_000
