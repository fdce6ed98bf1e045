"""A route offering ``upto`` charges what its handler used, after the handler, once; nothing for 0.

``PaywallMiddleware`` over a small app, a real ``LocalFacilitator``, the
payment database and the ledger's revenue books, on the memory chain and
anvil, through ``httpx.ASGITransport``. The 402 offers the price as a
ceiling with ``extra.facilitatorAddress``; a paid request runs the handler,
whose ``Farthing-Charge`` header (or the route's usage function) names the
charge, which alone moves on chain and is booked; a zero charge sends no
transaction and books nothing. A payer without Permit2 approval gets 412
``PERMIT2_ALLOWANCE_REQUIRED``; a replayed header, a payment for other terms,
a garbled header and a failing handler are each refused with the content
withheld and nothing charged.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.upto.client import payment_header, upto_payment
from farthing.paywall.schemes.upto.wire import parse_requirements
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv

USED = 1_234


async def _metered(request: Request) -> Response:
    return JSONResponse({"tokens": 42}, headers={"Farthing-Charge": str(USED)})


async def _nothing(request: Request) -> Response:
    return JSONResponse({"tokens": 0}, headers={"Farthing-Charge": "0"})


async def _counted(request: Request) -> Response:
    return JSONResponse({"tokens": 7})


async def _boom(request: Request) -> Response:
    return JSONResponse({"error": "upstream"}, status_code=502)


def _app() -> Starlette:
    return Starlette(
        routes=[
            Route("/chat", _metered),
            Route("/idle", _nothing),
            Route("/counted", _counted),
            Route("/broken", _boom),
        ]
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerDatabase]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield database
    database.dispose()


@pytest.fixture
def site(upto_env: UptoEnv, tmp_path: Path, ledger: LedgerDatabase) -> Iterator[Any]:
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    price = CEILING  # atomic units: the ceiling
    routes = [
        PaidRoute("/chat", price, schemes=("upto",)),
        PaidRoute("/idle", price, schemes=("upto",)),
        PaidRoute("/broken", price, schemes=("upto",)),
        PaidRoute("/counted", price, schemes=("upto", "exact"), usage=lambda answer: 7 * 100),
    ]
    app = PaywallMiddleware(
        _app(),
        options=PaywallOptions(
            routes=routes,
            facilitator=LocalFacilitator(upto_env.chain, upto_env.relayer),
            store=store,
            books=LedgerRevenueBook(ledger),
            pay_to=upto_env.payee.address,
            asset=upto_env.asset,
        ),
    )
    yield app
    store.dispose()


def _get(app: Any, path: str, header: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
            headers = {"PAYMENT-SIGNATURE": header} if header else {}
            return await client.get(path, headers=headers)

    return asyncio.run(go())


def _offer(response: httpx.Response) -> Any:
    challenge = json.loads(base64.b64decode(response.headers["PAYMENT-REQUIRED"]))
    (entry,) = [a for a in challenge["accepts"] if a["scheme"] == "upto"]
    offer = parse_requirements(entry)
    assert not hasattr(offer, "reason")
    return offer, challenge


def _pay(env: UptoEnv, app: Any, path: str, signer: Any = None) -> tuple[str, httpx.Response]:
    offer, _ = _offer(_get(app, path))
    header = payment_header(upto_payment(offer, signer or env.payer, now=env.chain.timestamp()))
    return header, _get(app, path, header)


def _settlement(response: httpx.Response) -> dict[str, Any]:
    return json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))


def test_the_402_offers_the_price_as_a_ceiling(upto_env: UptoEnv, site: Any) -> None:
    response = _get(site, "/chat")
    assert response.status_code == 402
    offer, challenge = _offer(response)
    assert offer.amount == CEILING and offer.facilitator_address == upto_env.relayer.address
    assert {"eip2612GasSponsoring", "erc20ApprovalGasSponsoring"} <= set(challenge["extensions"])


def test_the_handlers_charge_is_settled_and_booked(
    upto_env: UptoEnv, site: Any, ledger: LedgerDatabase
) -> None:
    env = upto_env
    _, response = _pay(env, site, "/chat")
    assert response.status_code == 200 and response.json() == {"tokens": 42}
    assert "farthing-charge" not in response.headers
    settlement = _settlement(response)
    assert settlement["success"] and settlement["amount"] == str(USED)
    assert env.balance(env.payee) == USED and env.balance(env.payer) == FUNDS - USED
    with ledger.read() as session:
        (row,) = revenue_report(session=session, payee_address=env.payee.address)
        assert (row.posted, row.payment_count) == (USED, 1)


def test_a_usage_function_names_the_charge(upto_env: UptoEnv, site: Any) -> None:
    _, response = _pay(upto_env, site, "/counted")
    assert response.status_code == 200 and _settlement(response)["amount"] == "700"
    assert upto_env.balance(upto_env.payee) == 700


def test_a_zero_charge_sends_no_transaction_and_books_nothing(
    upto_env: UptoEnv, site: Any, ledger: LedgerDatabase
) -> None:
    env = upto_env
    block = env.chain.block_number()
    _, response = _pay(env, site, "/idle")
    assert response.status_code == 200
    settlement = _settlement(response)
    assert (settlement["success"], settlement["transaction"], settlement["amount"]) == (
        True, "", "0",
    )  # fmt: skip
    assert env.chain.block_number() == block and env.balance(env.payer) == FUNDS
    with ledger.read() as session:
        assert revenue_report(session=session, payee_address=env.payee.address) == []


def test_a_replayed_header_gets_no_content_and_pays_once(upto_env: UptoEnv, site: Any) -> None:
    env = upto_env
    header, first = _pay(env, site, "/chat")
    assert first.status_code == 200
    again = _get(site, "/chat", header)
    assert again.status_code == 402 and "tokens" not in again.text
    assert env.balance(env.payee) == USED


def test_a_payer_without_permit2_approval_gets_412(upto_env: UptoEnv, site: Any) -> None:
    _, response = _pay(upto_env, site, "/chat", signer=upto_env.fresh)
    assert response.status_code == 412
    assert response.json()["error"] == "PERMIT2_ALLOWANCE_REQUIRED"
    assert "PAYMENT-REQUIRED" in response.headers and "tokens" not in response.text


def test_a_failing_handler_is_charged_nothing(upto_env: UptoEnv, site: Any) -> None:
    _, response = _pay(upto_env, site, "/broken")
    assert response.status_code == 502 and "PAYMENT-RESPONSE" not in response.headers
    assert upto_env.balance(upto_env.payer) == FUNDS


def test_a_payment_for_other_terms_or_garbled_is_refused(upto_env: UptoEnv, site: Any) -> None:
    env = upto_env
    offer, _ = _offer(_get(site, "/chat"))
    cheaper = offer.charging(1)  # a smaller ceiling than offered
    header = payment_header(upto_payment(cheaper, env.payer, now=env.chain.timestamp()))
    response = _get(site, "/chat", header)
    assert response.status_code == 402 and "tokens" not in response.text
    wire = json.loads(base64.b64decode(header))
    wire["payload"]["permit2Authorization"]["nonce"] = "-5"
    garbled = base64.b64encode(json.dumps(wire).encode()).decode()
    assert _get(site, "/chat", garbled).status_code == 400
    assert env.balance(env.payer) == FUNDS


def test_the_charge_is_capped_and_a_bad_figure_charges_the_ceiling() -> None:
    from farthing.paywall.edge.asgi import Buffered
    from farthing.paywall.edge.upto import charge_of

    def answer(charge: str | None, status: int = 200) -> Buffered:
        return Buffered(status=status, charge=charge)

    assert charge_of(answer("250"), 1_000, None) == 250
    assert charge_of(answer("5000"), 1_000, None) == 1_000  # capped at the signed ceiling
    for bad in ("-1", "1e3", "12.5", "", "١٢"):
        assert charge_of(answer(bad), 1_000, None) == 1_000
    assert charge_of(answer(None), 1_000, None) == 1_000
    assert charge_of(answer("250", status=500), 1_000, None) == 0
    assert charge_of(answer(None), 1_000, lambda _: 10**30) == 1_000
    assert charge_of(answer(None), 1_000, lambda _: -5) == 1_000
    with pytest.raises(TypeError):
        charge_of(answer(None), 1_000, lambda _: 1.5)  # type: ignore[arg-type,return-value]


def test_a_seller_with_a_remote_facilitator_settles_the_charge(
    upto_env: UptoEnv, tmp_path: Path
) -> None:
    """The seller's facilitator is ``facilitator serve``'s API (over ASGI), named by address."""
    from farthing.paywall import RemoteFacilitator, facilitator_app

    env = upto_env
    api = facilitator_app(LocalFacilitator(env.chain, env.relayer))
    remote = RemoteFacilitator("http://facilitator.test", transport=httpx.ASGITransport(app=api))
    store = PaymentStore.sqlite(tmp_path / "remote.sqlite")
    try:
        app = PaywallMiddleware(
            _app(),
            options=PaywallOptions(
                routes=[PaidRoute("/chat", CEILING, schemes=("upto",))],
                facilitator=remote,
                store=store,
                pay_to=env.payee.address,
                asset=env.asset,
                upto_facilitator=env.relayer.address,
            ),
        )
        _, response = _pay(env, app, "/chat")
        assert response.status_code == 200 and _settlement(response)["amount"] == str(USED)
        assert env.balance(env.payee) == USED
    finally:
        store.dispose()


def test_the_sweep_never_books_a_zero_charge_at_the_ceiling(
    upto_env: UptoEnv, tmp_path: Path, ledger: LedgerDatabase
) -> None:
    """A settled row's amount is the ceiling: a zero charge's row must not be left for the sweep."""
    from farthing.paywall.facilitator.resolve import sweep

    env = upto_env
    facilitator = LocalFacilitator(env.chain, env.relayer)
    store = PaymentStore.sqlite(tmp_path / "sweep.sqlite")
    books = LedgerRevenueBook(ledger)
    try:
        app = PaywallMiddleware(
            _app(),
            options=PaywallOptions(
                routes=[PaidRoute("/idle", CEILING, schemes=("upto",))],
                facilitator=facilitator,
                store=store,
                books=books,
                pay_to=env.payee.address,
                asset=env.asset,
            ),
        )
        _, response = _pay(env, app, "/idle")
        assert response.status_code == 200 and _settlement(response)["amount"] == "0"
        assert list(store.unbooked()) == []
        assert sweep(store, facilitator, books).booked == 0
        with ledger.read() as session:
            assert revenue_report(session=session, payee_address=env.payee.address) == []
    finally:
        store.dispose()
