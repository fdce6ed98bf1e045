"""A reader who paid reads the article again from the same browser, and nobody else does.

Receipts are checked as values (signed, expiring, bound to one path; placeholder
secrets refused), then end to end: a real payment on anvil through the
middleware (httpx.ASGITransport) sets the receipt cookie; sending it back
reads the article with no new payment, while a tampered, foreign or expired
receipt gets the 402.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from farthing.paywall import PaymentState, PaymentStore
from farthing.paywall.edge.receipts import Receipt, ReceiptRefusal, Receipts
from farthing.paywall.errors import PaywallConfigError
from tests.paywall.conftest import (
    ChainEnv,
    asgi_client,
    challenge_of,
    paywalled,
    run,
    sign_for,
)

SECRET = SecretStr("k8Jd0-q3mZ_rT1vXyW9pLs4Nf6Hc2Be7Ga5Uo0Ri-Qt")


def test_a_receipt_opens_its_own_path_until_it_expires() -> None:
    receipts = Receipts(SECRET, lifetime_s=3600)
    token = receipts.issue("/articles/a", "0xAbC", now_s=1_000)
    assert receipts.check(token, "/articles/a", now_s=1_001) == Receipt(
        "/articles/a", "0xabc", 4_600
    )
    assert receipts.check(token, "/articles/b", now_s=1_001) == ReceiptRefusal(
        "receipt_for_another_resource"
    )
    assert receipts.check(token, "/articles/a", now_s=4_600) == ReceiptRefusal("receipt_expired")
    body, mac = token.split(".")
    forged = Receipts(SecretStr("another-secret-of-enough-length-0123456789")).issue(
        "/articles/a", "0x1"
    )
    assert receipts.check(forged, "/articles/a") == ReceiptRefusal("receipt_signature_invalid")
    assert receipts.check(body + "." + mac[:-2] + "AA", "/articles/a").reason in (
        "receipt_signature_invalid",
        "receipt_malformed",
    )
    for junk in ("", "no-dot", "a.b.c", "!!.??", "x" * 5000):
        assert isinstance(receipts.check(junk, "/articles/a"), ReceiptRefusal)
    assert "k8Jd0" not in repr(receipts)


@pytest.mark.parametrize("secret", ["changeme", "short", "a" * 40, "secret" + " " * 30])
def test_placeholder_or_short_secrets_are_refused(secret: str) -> None:
    with pytest.raises(PaywallConfigError):
        Receipts(SecretStr(secret))


def _cookies(response: Any) -> dict[str, str]:
    found = {}
    for value in response.headers.get_list("set-cookie"):
        name, _, rest = value.partition("=")
        found[name] = rest.split(";", 1)[0]
        assert "HttpOnly" in value and "SameSite=Lax" in value
    return found


@pytest.mark.anvil
def test_a_paid_article_sets_a_receipt_that_reads_it_again_for_free(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    payer = chain_env.new_payer()
    receipts = Receipts(SECRET)
    app = paywalled(chain_env, store, receipts=receipts)
    name = receipts.cookie_name("/articles/farthing")

    async def go() -> Any:
        async with asgi_client(app) as client:
            unpaid = await client.get("/articles/farthing")
            header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
            paid = await client.get("/articles/farthing", headers={"PAYMENT-SIGNATURE": header})
            token = _cookies(paid)[name]
            client.cookies.clear()
            again = await client.get("/articles/farthing", headers={"cookie": f"{name}={token}"})
            other = await client.get(
                "/articles/other",
                headers={"cookie": f"{receipts.cookie_name('/articles/other')}={token}"},
            )
            tampered = await client.get(
                "/articles/farthing", headers={"cookie": f"{name}={token[:-3]}abc"}
            )
            api = await client.get("/api/data", headers={"cookie": f"{name}={token}"})
            return paid, again, other, tampered, api

    paid, again, other, tampered, api = run(go())
    assert paid.status_code == 200 and paid.text.count("PAID-PART") == 2
    assert again.status_code == 200 and again.text.count("PAID-PART") == 2
    assert "private" in again.headers["cache-control"]
    assert "payment-response" not in again.headers  # nothing was paid this time
    assert other.status_code == 402 and "PAID-PART" not in other.text
    assert tampered.status_code == 402 and "PAID-PART" not in tampered.text
    assert api.status_code == 402  # per-call routes are never owned
    settled = store.records(state=PaymentState.SETTLED)
    assert len(settled) == 1  # one payment, two reads
    assert chain_env.token.balance_of(chain_env.merchant) >= 10_000


@pytest.mark.anvil
def test_without_receipts_no_cookie_is_set(chain_env: ChainEnv, store: PaymentStore) -> None:
    payer = chain_env.new_payer()
    app = paywalled(chain_env, store)

    async def go() -> Any:
        async with asgi_client(app) as client:
            unpaid = await client.get("/articles/farthing")
            assert "extensions" not in unpaid.json()
            header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
            return await client.get("/articles/farthing", headers={"PAYMENT-SIGNATURE": header})

    paid = run(go())
    assert paid.status_code == 200 and not paid.headers.get_list("set-cookie")
