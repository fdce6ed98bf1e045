"""A sign-in header is good once across every paywall process, strangers store nothing, and a fresh sign-in is never refused for lack of room.

The used-nonce store runs on a real SQLite file, opened twice as two
processes would; the middleware runs on anvil through ASGI; the replay runs
against two real ``farthing paywall serve`` processes sharing one payment
database (one paid at, signed in at, then the same header sent to the other).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import SecretStr

from farthing.paywall import PaymentStore
from farthing.paywall.edge.nonces import UsedSignIns
from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.sign_in import siwe_message
from farthing.wallet.signer import LocalSigner
from tests.conftest import free_port
from tests.paywall.conftest import (
    ChainEnv,
    asgi_client,
    challenge_of,
    inner_app,
    paywalled,
    run,
    serve_in_thread,
    sign_for,
)
from tests.paywall.test_serve_origin import pay, start_serve, write_config

SECRET = SecretStr("Vq8-Hn3xRk5Pw1Lt7Yb4Mc9Jd2Fs6Gz0Ea-Uo")
ARTICLE = "/articles/farthing"


def _sign(info: dict[str, Any], signer: LocalSigner, network: str) -> str:
    payload = {**info, "address": signer.address, "chainId": network, "type": "eip191"}
    key = signer.private_key.get_secret_value()
    signature = Account.sign_message(encode_defunct(text=siwe_message(payload)), key).signature
    payload["signature"] = "0x" + signature.hex()
    return base64.b64encode(json.dumps(payload).encode()).decode()


def _used(store: PaymentStore) -> UsedSignIns:
    return UsedSignIns(store.engine, dialect=store.dialect, display_url=store.display_url)


def test_a_nonce_is_spent_once_by_any_process_sharing_the_database(tmp_path: Path) -> None:
    first, second = (PaymentStore.sqlite(tmp_path / "paywall.sqlite") for _ in range(2))
    try:
        one, other = _used(first), _used(second)
        assert one.first_use("a" * 32, 2_000, now_s=1_000)
        assert not other.first_use("a" * 32, 2_000, now_s=1_000)
        assert not one.first_use("a" * 32, 2_000, now_s=1_500)
        assert other.first_use("b" * 32, 2_000, now_s=1_000)
    finally:
        first.dispose()
        second.dispose()


def test_expired_nonces_go_a_few_per_call_and_room_never_runs_out(tmp_path: Path) -> None:
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    try:
        used = _used(store)
        for n in range(10):
            assert used.first_use(f"{n:032x}", 1_100, now_s=1_000)
        assert used.count() == 10
        # Past their freshness: each later call removes at most two (constant work per call).
        assert used.first_use("f" * 32, 3_000, now_s=2_000)
        assert used.count() == 9
        for n in range(4):
            assert used.first_use(f"{100 + n:032x}", 3_000, now_s=2_000)
        assert used.count() == 9 + 4 - 8
    finally:
        store.dispose()


def test_the_in_process_memory_never_refuses_a_fresh_nonce_for_lack_of_room() -> None:
    """Finding 12: at 100,000 entries the old memory called every fresh nonce reused."""
    receipts = Receipts(SECRET)
    fresh = [receipts.first_use(f"{n:032x}", 10_000, now_s=1_000) for n in range(100_001)]
    assert all(fresh)
    assert not receipts.first_use(f"{7:032x}", 10_000, now_s=1_001)  # still single use
    # Once their second has passed, they are forgotten (and a late copy is stale anyway).
    assert receipts.first_use(f"{7:032x}", 20_000, now_s=10_001)


def test_a_deeply_nested_sign_in_header_is_a_refusal_not_a_crash() -> None:
    from farthing.paywall.edge.sign_in import SignInRefusal, verify_sign_in

    header = base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()[:8000]
    refused = verify_sign_in(
        header, resource_url="http://x.test/a", network="eip155:1", receipts=Receipts(SECRET)
    )
    assert isinstance(refused, SignInRefusal) and refused.reason == "invalid_siwx_header"


@pytest.mark.anvil
def test_strangers_store_nothing_and_the_payer_keeps_signing_in(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    payer = chain_env.new_payer()
    strangers = [LocalSigner.generate() for _ in range(30)]
    app = paywalled(chain_env, store, receipts=Receipts(SECRET), public_url="http://paywall.test")
    network = chain_env.chain.network

    async def go() -> dict[str, Any]:
        async with asgi_client(app) as client:
            unpaid = await client.get(ARTICLE)
            header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
            assert (await client.get(ARTICLE, headers={"PAYMENT-SIGNATURE": header})).is_success
            client.cookies.clear()
            refused = []
            for stranger in strangers:
                info = challenge_of(await client.get(ARTICLE))["extensions"]["sign-in-with-x"]
                answer = await client.get(
                    ARTICLE, headers={"SIGN-IN-WITH-X": _sign(info["info"], stranger, network)}
                )
                refused.append(answer.status_code)
            stored_after_strangers = app.used_sign_ins.count() if app.used_sign_ins else -1
            info = challenge_of(await client.get(ARTICLE))["extensions"]["sign-in-with-x"]["info"]
            signed = _sign(info, payer, network)
            owner = await client.get(ARTICLE, headers={"SIGN-IN-WITH-X": signed})
            client.cookies.clear()
            replay = await client.get(ARTICLE, headers={"SIGN-IN-WITH-X": signed})
            info = challenge_of(replay)["extensions"]["sign-in-with-x"]["info"]
            again = await client.get(
                ARTICLE, headers={"SIGN-IN-WITH-X": _sign(info, payer, network)}
            )
            return {
                "refused": refused,
                "stored_after_strangers": stored_after_strangers,
                "owner": owner,
                "replay": replay,
                "again": again,
            }

    seen = run(go())
    assert set(seen["refused"]) == {402}
    assert seen["stored_after_strangers"] == 0
    assert seen["owner"].status_code == 200 and seen["owner"].text.count("PAID-PART") == 2
    assert seen["replay"].status_code == 402 and "PAID-PART" not in seen["replay"].text
    assert seen["again"].status_code == 200  # a fresh sign-in of the payer is never "reused"


@pytest.mark.anvil
def test_a_sign_in_replayed_at_another_process_sharing_the_database_is_refused(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    """Finding 12: each process used to keep its own memory: one replay per replica."""
    payer = chain_env.new_payer()
    network = chain_env.chain.network
    port_a, port_b = free_port(), free_port()
    with serve_in_thread(inner_app()) as upstream:
        # Both replicas serve one public address and share the database and receipt secret.
        config = write_config(
            chain_env, tmp_path, upstream, public_url=f"http://127.0.0.1:{port_a}"
        )
        a = start_serve(config, tmp_path, port_a)
        b = start_serve(config, tmp_path, port_b)
        try:
            with httpx.Client(timeout=30.0) as client:
                pay(client, a.url + ARTICLE, payer)
            with httpx.Client(timeout=30.0) as client:
                info = challenge_of(client.get(a.url + ARTICLE))["extensions"]["sign-in-with-x"]
                signed = _sign(info["info"], payer, network)
                at_a = client.get(a.url + ARTICLE, headers={"SIGN-IN-WITH-X": signed})
                client.cookies.clear()
                at_b = client.get(b.url + ARTICLE, headers={"SIGN-IN-WITH-X": signed})
                client.cookies.clear()
                info = challenge_of(at_b)["extensions"]["sign-in-with-x"]
                fresh_at_b = client.get(
                    b.url + ARTICLE, headers={"SIGN-IN-WITH-X": _sign(info["info"], payer, network)}
                )
        finally:
            a.stop()
            b.stop()
    assert at_a.status_code == 200 and at_a.text.count("PAID-PART") == 2
    assert at_b.status_code == 402 and "PAID-PART" not in at_b.text
    assert fresh_at_b.status_code == 200 and fresh_at_b.text.count("PAID-PART") == 2
