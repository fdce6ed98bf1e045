"""The paywall middleware charges before it serves: 402 terms, settle on 2xx only, article previews.

Driven through ``httpx.ASGITransport`` against a real anvil with our token, a
real SQLite payment store and the in-process facilitator; payers sign with
Farthing's wallet. Each test reads balances on-chain and checks what the
client received, so a leak of paid content or a charge without content fails.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database, verify
from farthing.paywall import LedgerRevenueBook, PaidRoute, PaymentState, PaymentStore, PriceRequest
from farthing.paywall.errors import PaywallConfigError, PriceError
from farthing.paywall.wire import unb64_json
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    paywalled,
    run,
    sign_for,
)

pytestmark = pytest.mark.anvil


def test_unpaid_request_gets_the_x402_v2_challenge(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    app = paywalled(chain_env, store)

    async def go() -> Any:
        async with asgi_client(app) as client:
            return await client.get("/api/data")

    response = run(go())
    assert response.status_code == 402
    challenge = challenge_of(response)
    assert challenge["x402Version"] == 2
    assert challenge["resource"] == {
        "url": "http://paywall.test/api/data",
        "description": "data",
        "mimeType": "",
    }
    (accepts,) = challenge["accepts"]
    assert accepts == {
        "scheme": "exact",
        "network": chain_env.chain.network,
        "asset": chain_env.asset.address,
        "amount": str(PRICE_ATOMIC),
        "payTo": chain_env.merchant,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    body = response.json()
    assert body["accepts"] == challenge["accepts"] and body["resource"] == challenge["resource"]
    assert body["error"] == "payment_required"
    assert "0.01 USDC" in body["message"] and "paid-data" not in response.text
    assert response.headers["cache-control"] == "no-store"


def test_a_paid_request_is_settled_then_served(chain_env: ChainEnv, store: PaymentStore) -> None:
    payer = chain_env.new_payer()
    before = chain_env.token.balance_of(chain_env.merchant)
    app = paywalled(chain_env, store)

    async def go() -> Any:
        async with asgi_client(app) as client:
            first = await client.get("/api/data?n=7")
            header = sign_for(challenge_of(first)["accepts"][0], payer)
            return await client.get("/api/data?n=7", headers={"PAYMENT-SIGNATURE": header})

    response = run(go())
    assert response.status_code == 200, response.text
    assert response.json() == {"secret": "paid-data", "n": "7"}
    receipt = unb64_json(response.headers["payment-response"])
    assert receipt["success"] is True and receipt["payer"] == payer.address
    assert receipt["network"] == chain_env.chain.network and receipt["transaction"].startswith("0x")
    assert "private" in response.headers["cache-control"]
    assert chain_env.token.balance_of(chain_env.merchant) == before + PRICE_ATOMIC
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    (record,) = store.records()
    assert record.state == PaymentState.SETTLED and record.tx_hash == receipt["transaction"]


def test_an_article_shows_its_preview_and_only_the_paid_reply_has_it_all(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    payer = chain_env.new_payer()
    app = paywalled(chain_env, store)

    async def go() -> Any:
        async with asgi_client(app) as client:
            unpaid = await client.get("/articles/farthing")
            header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
            paid = await client.get("/articles/farthing", headers={"PAYMENT-SIGNATURE": header})
            return unpaid, paid

    unpaid, paid = run(go())
    assert unpaid.status_code == 402
    body = unpaid.json()
    assert "PAID-PART" not in unpaid.text
    assert body["preview"].startswith("<html><body><article><h1>The farthing</h1>")
    assert "a quarter of a penny" in body["preview"]
    assert body["preview"].endswith("</p></article></body></html>")  # whole blocks, closed
    assert body["previewFraction"] == "0.4"
    assert paid.status_code == 200
    assert paid.text.count("PAID-PART") == 2


def test_handler_errors_and_non_2xx_release_the_claim_unsettled(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    payer = chain_env.new_payer()
    app = paywalled(chain_env, store)
    before = chain_env.token.balance_of(payer.address)

    async def go() -> Any:
        async with asgi_client(app) as client:
            challenge = challenge_of(await client.get("/api/missing"))["accepts"][0]
            missing = await client.get(
                "/api/missing", headers={"PAYMENT-SIGNATURE": sign_for(challenge, payer)}
            )
            header = sign_for(challenge, payer)
            with pytest.raises(RuntimeError, match="the handler failed"):
                await client.get("/api/boom", headers={"PAYMENT-SIGNATURE": header})
            # The released authorization is still good for a handler that works.
            retry = await client.get("/api/data", headers={"PAYMENT-SIGNATURE": header})
            return missing, retry

    missing, retry = run(go())
    assert missing.status_code == 404 and "payment-response" not in missing.headers
    assert retry.status_code == 200
    assert chain_env.token.balance_of(payer.address) == before - PRICE_ATOMIC
    states = sorted(r.state for r in store.records())
    assert states == [PaymentState.RELEASED, PaymentState.SETTLED]


def test_free_routes_and_other_methods_pass_through(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    app = paywalled(chain_env, store)

    async def go() -> Any:
        async with asgi_client(app) as client:
            return await client.get("/free"), await client.delete("/articles/x")

    free, other = run(go())
    assert free.status_code == 200 and free.text == "free"
    assert other.status_code == 405  # not priced: the app answers


def test_fiat_prices_convert_at_the_configured_rate_and_keep_it(
    chain_env: ChainEnv, store: PaymentStore, tmp_path: Path
) -> None:
    payer = chain_env.new_payer()
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    routes = [PaidRoute("/api/data", "0.1 CNY", description="fiat priced")]
    app = paywalled(
        chain_env, store, routes=routes, rates={"CNY": "0.1385"}, books=LedgerRevenueBook(database)
    )

    async def go() -> Any:
        async with asgi_client(app) as client:
            unpaid = await client.get("/api/data")
            header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
            return unpaid, await client.get("/api/data", headers={"PAYMENT-SIGNATURE": header})

    unpaid, paid = run(go())
    assert challenge_of(unpaid)["accepts"][0]["amount"] == "13850"
    assert unpaid.json()["price"] == {
        "amount": "13850",
        "display": "0.01385 USDC",
        "asset": chain_env.asset.address,
        "network": chain_env.chain.network,
        "fiatCurrency": "CNY",
        "fiatAmount": "0.1",
        "fiatRate": "0.1385",
    }
    assert paid.status_code == 200
    (record,) = store.records()
    assert record.fiat_rate == Decimal("0.1385") and record.fiat_currency == "CNY" and record.booked
    with database.read() as session:
        (row,) = revenue_report(session=session, payee_address=chain_env.merchant)
        assert (row.resource, row.posted) == ("http://paywall.test/api/data", 13850)
        assert verify(session=session).ok
    database.dispose()


def test_a_dynamic_price_is_asked_per_request(chain_env: ChainEnv, store: PaymentStore) -> None:
    seen: list[PriceRequest] = []

    async def per_call(request: PriceRequest) -> str:
        seen.append(request)
        return f"0.00{request.query.split('=')[1]} USDC"

    app = paywalled(chain_env, store, routes=[PaidRoute("/api/data", per_call)])

    async def go() -> Any:
        async with asgi_client(app) as client:
            return await client.get("/api/data?n=2"), await client.get("/api/data?n=5")

    two, five = run(go())
    assert challenge_of(two)["accepts"][0]["amount"] == "2000"
    assert challenge_of(five)["accepts"][0]["amount"] == "5000"
    assert [r.query for r in seen] == ["n=2", "n=5"]


def test_configuration_is_checked_when_the_middleware_is_built(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    with pytest.raises(PriceError, match="not a whole number of atomic units"):
        paywalled(
            chain_env, store, routes=[PaidRoute("/a", "0.1 CNY")], rates={"CNY": "0.13888888"}
        )
    with pytest.raises(PriceError, match="no exchange rate for EUR"):
        paywalled(chain_env, store, routes=[PaidRoute("/a", "1 EUR")])
    with pytest.raises(PriceError, match="not a float"):
        paywalled(chain_env, store, routes=[PaidRoute("/a", "1 CNY")], rates={"CNY": 0.14})
    with pytest.raises(PaywallConfigError, match="must start with '/'"):
        paywalled(chain_env, store, routes=[PaidRoute("a/*", "0.01")])
    with pytest.raises(PaywallConfigError, match="preview_fraction"):
        paywalled(chain_env, store, routes=[PaidRoute("/a", "0.01", preview_fraction=Decimal(2))])
    # Rounding up is the explicit opt-in, and it never undercharges.
    app = paywalled(
        chain_env,
        store,
        routes=[PaidRoute("/a", "0.1 CNY")],
        rates={"CNY": "0.13888888"},
        rounding="up",
    )
    (route,) = list(app.routes)
    assert route.static_quote is not None and route.static_quote.amount == 13889
