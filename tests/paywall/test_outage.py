"""When the chain does not answer, the paywall answers 503, sends no content, books nothing, and never charges twice.

The chain is a real anvil reached through ``FakeFlakyRpc``, a small JSON-RPC
relay on 127.0.0.1 that can drop or stall chosen methods (the seam is the
node's HTTP endpoint, which we do not own). Receipt timeouts are produced for
real by turning anvil's automine off. After each outage the same payment
header is retried: it is resolved from the chain (receipt, then
``authorizationState`` and the token's ``AuthorizationUsed`` log) and the
content is delivered once, with exactly one transfer on-chain.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentState, PaymentStore
from farthing.paywall.wire import unb64_json
from farthing.wallet.chain import RpcChain
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    inner_app,
    paywalled,
    run,
    sign_for,
)

pytestmark = pytest.mark.anvil


class FakeFlakyRpc:
    """Relays JSON-RPC to anvil, except methods told to ``fail`` (drop) or ``stall`` (hang)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.failing: set[str] = set()
        self.stalling: set[str] = set()
        self.down = False
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                asked = json.loads(body)
                # A batch (verify reads the payer's state in one) fails or
                # stalls when any of its methods would.
                methods = {
                    str(one.get("method", ""))
                    for one in (asked if isinstance(asked, list) else [asked])
                }
                if relay.down or methods & relay.failing:
                    self.close_connection = True
                    self.connection.close()  # as a dead node: no answer at all
                    return
                if methods & relay.stalling:
                    time.sleep(3)  # longer than the client's timeout
                request = urllib.request.Request(
                    relay.upstream, body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=10) as answer:
                    data = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def heal(self) -> None:
        self.failing.clear()
        self.stalling.clear()
        self.down = False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(chain_env: ChainEnv) -> Iterator[FakeFlakyRpc]:
    relay = FakeFlakyRpc(chain_env.chain.rpc_url or "")
    yield relay
    relay.close()


@pytest.fixture
def books(tmp_path: Path) -> Iterator[LedgerRevenueBook]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield LedgerRevenueBook(database)
    database.dispose()


def _revenue(books: LedgerRevenueBook, merchant: str) -> int:
    with books.database.read() as session:
        return sum(row.posted for row in revenue_report(session=session, payee_address=merchant))


class CountingApp:
    """The test app, counting how often its handlers run."""

    def __init__(self) -> None:
        self.app = inner_app()
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


def _paywall(env: ChainEnv, store: PaymentStore, chain: RpcChain, books: LedgerRevenueBook) -> Any:
    app = paywalled(env, store, facilitator=LocalFacilitator(chain, env.relayer), books=books)
    counting = CountingApp()
    app.app = counting
    return app, counting


def _get(app: Any, header: str | None = None) -> Any:
    async def go() -> Any:
        async with asgi_client(app) as client:
            headers = {"PAYMENT-SIGNATURE": header} if header else {}
            return await client.get("/api/data", headers=headers)

    return run(go())


@pytest.mark.parametrize("outage", ["down", "slow"])
def test_rpc_outage_at_verify_is_a_503_and_the_handler_never_runs(
    outage: str,
    chain_env: ChainEnv,
    store: PaymentStore,
    flaky: FakeFlakyRpc,
    books: LedgerRevenueBook,
) -> None:
    chain = RpcChain(flaky.url, timeout_s=1.0, receipt_timeout_s=5.0)
    app, counting = _paywall(chain_env, store, chain, books)
    header = sign_for(challenge_of(_get(app))["accepts"][0], chain_env.new_payer())
    if outage == "down":
        flaky.down = True
    else:
        flaky.stalling.add("eth_call")
    response = _get(app, header)
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "facilitator_unavailable"
    assert (
        flaky.url in body["message"]
        and ("timed out" if outage == "slow" else "did not answer") in body["message"]
    )
    assert counting.calls == 0 and "paid-data" not in response.text
    assert store.records() == [] and _revenue(books, chain_env.merchant) == 0
    flaky.heal()
    assert _get(app, header).status_code == 200  # the payment was never spent


def test_rpc_lost_while_settling_is_pending_then_resolved_from_the_chain(
    chain_env: ChainEnv, store: PaymentStore, flaky: FakeFlakyRpc, books: LedgerRevenueBook
) -> None:
    chain = RpcChain(flaky.url, timeout_s=1.0, receipt_timeout_s=5.0)
    app, _ = _paywall(chain_env, store, chain, books)
    payer = chain_env.new_payer()
    header = sign_for(challenge_of(_get(app))["accepts"][0], payer)
    # The transaction goes out, but no receipt ever comes back.
    flaky.failing.add("eth_getTransactionReceipt")
    response = _get(app, header)
    assert response.status_code == 503, response.text
    assert "paid-data" not in response.text
    (record,) = store.records()
    assert record.state == PaymentState.PENDING and not record.booked
    assert _revenue(books, chain_env.merchant) == 0
    # The money did move: it must not move again when the payer retries.
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    flaky.heal()
    retry = _get(app, header)
    assert retry.status_code == 200, retry.text
    assert retry.json()["secret"] == "paid-data"
    assert unb64_json(retry.headers["payment-response"])["success"] is True
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    (record,) = store.records()
    assert record.state == PaymentState.SETTLED and record.booked
    assert _revenue(books, chain_env.merchant) == PRICE_ATOMIC
    again = _get(app, header)
    assert again.status_code == 402 and again.json()["error"] == "nonce_already_used"


def test_a_receipt_timeout_answers_settlement_pending_and_never_charges_twice(
    chain_env: ChainEnv, store: PaymentStore, books: LedgerRevenueBook
) -> None:
    chain = RpcChain(chain_env.chain.rpc_url or "", timeout_s=5.0, receipt_timeout_s=1.0)
    app, _ = _paywall(chain_env, store, chain, books)
    payer = chain_env.new_payer()
    header = sign_for(challenge_of(_get(app))["accepts"][0], payer)
    provider = chain_env.chain.w3.provider
    sent_before = chain_env.chain.w3.eth.get_transaction_count(chain_env.relayer.address)
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        pending = _get(app, header)
        assert pending.status_code == 503
        assert pending.json()["error"] == "settlement_pending"
        assert "paid-data" not in pending.text
        receipt = unb64_json(pending.headers["payment-response"])
        assert receipt["success"] is False and receipt["errorReason"] == "settlement_pending"
        (record,) = store.records()
        assert record.state == PaymentState.PENDING and record.tx_hash == receipt["transaction"]
        # A retry while the transaction is still unmined must not send a second one.
        still = _get(app, header)
        assert still.status_code == 503 and still.json()["error"] == "settlement_pending"
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    done = _get(app, header)
    assert done.status_code == 200, done.text
    assert unb64_json(done.headers["payment-response"])["transaction"] == receipt["transaction"]
    assert chain_env.token.balance_of(payer.address) == 50_000_000 - PRICE_ATOMIC
    assert _revenue(books, chain_env.merchant) == PRICE_ATOMIC
    # One settlement transaction in all: the retries waited instead of resending.
    sent_after = chain_env.chain.w3.eth.get_transaction_count(chain_env.relayer.address)
    assert sent_after == sent_before + 1
