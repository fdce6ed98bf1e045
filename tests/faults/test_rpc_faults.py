"""Chain RPC faults fail closed: the paywall answers 503 or a 402 with a reason, the CLI one line, and no payment is lost or doubled.

A real anvil sits behind ``FaultProxy`` (a JSON-RPC relay on 127.0.0.1 whose
faults a test switches at run time): refused connections, replies held past
the client's timeout, JSON-RPC error objects, and a reorg (``anvil_snapshot``
then ``evm_revert``) that drops a booked settlement. The real paywall,
facilitator HTTP API, agent paying client and ``farthing ledger reconcile``
run against it. After each fault clears, the payer's retry with the same
header converges to exactly one transfer on chain, one revenue transfer in the
books, and Σdebits = Σcredits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.devchain.node import start_anvil
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.ledger.tables import Account
from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentState, PaymentStore
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.records.books import account_id
from farthing.paywall.wire import decode_payment_signature, unb64_json
from farthing.wallet.chain import RpcChain
from tests.conftest import anvil_missing_reason, cli_env, run_farthing
from tests.faults.fault_proxy import FaultProxy, port_is_refused
from tests.paywall.conftest import (
    PAYER_FUNDS,
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    deploy_env,
    paywalled,
    run,
    sign_for,
)

pytestmark = pytest.mark.anvil

TIMEOUT_S = 1.0
RECEIPT_TIMEOUT_S = 3.0
HELD_S = 2.5  # longer than TIMEOUT_S: the client gives up first
# The longest a paid request may take under any of these faults: a few
# timed-out round trips and one receipt wait, never a hang.
ANSWER_BOUND_S = RECEIPT_TIMEOUT_S + 4 * TIMEOUT_S


@pytest.fixture(scope="module")
def env() -> Iterator[ChainEnv]:
    """This module's own anvil and token (the reorg tests move its clock and rewind it)."""
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        made = deploy_env(node)
        yield made
        made.chain.close()


@pytest.fixture
def proxy(env: ChainEnv) -> Iterator[FaultProxy]:
    relay = FaultProxy(env.chain.rpc_url or "")
    yield relay
    relay.close()


@pytest.fixture
def proxied(proxy: FaultProxy) -> Iterator[RpcChain]:
    chain = RpcChain(proxy.url, timeout_s=TIMEOUT_S, receipt_timeout_s=RECEIPT_TIMEOUT_S)
    yield chain
    chain.close()


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def books(ledger_url: str) -> Iterator[LedgerRevenueBook]:
    database = LedgerDatabase(LedgerSettings(database_url=ledger_url))
    upgrade_database(database)
    yield LedgerRevenueBook(database)
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PaymentStore]:
    payments = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    yield payments
    payments.dispose()


class Paywall:
    """The real middleware over a facilitator on the proxied chain, counting handler runs."""

    def __init__(self, env: ChainEnv, store: PaymentStore, chain: RpcChain, books: Any) -> None:
        self.app = paywalled(
            env, store, facilitator=LocalFacilitator(chain, env.relayer), books=books
        )
        inner = self.app.app
        self.calls = 0

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.calls += 1
            await inner(scope, receive, send)

        self.app.app = counting

    def get(self, header: str | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            async with asgi_client(self.app) as client:
                headers = {"PAYMENT-SIGNATURE": header} if header else {}
                return await client.get("/api/data", headers=headers)

        response: httpx.Response = run(go())
        return response

    def header(self, payer: Any) -> str:
        return sign_for(challenge_of(self.get())["accepts"][0], payer)


def _revenue_balance(books: LedgerRevenueBook, merchant: str) -> int:
    with books.database.read() as session:
        account = session.get(Account, account_id("revenue", 1, merchant))
        return 0 if account is None else account.credits_posted - account.debits_posted


def _books_balance(books: LedgerRevenueBook) -> None:
    with books.database.read() as session:
        accounts = list(session.query(Account))
    assert sum(a.debits_posted for a in accounts) == sum(a.credits_posted for a in accounts)
    assert sum(a.debits_pending for a in accounts) == sum(a.credits_pending for a in accounts)


def _assert_unavailable(response: httpx.Response, *words: str) -> None:
    """A 503 that says why in JSON, with no content and no traceback."""
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] in ("facilitator_unavailable", "settlement_pending"), body
    assert "paid-data" not in response.text and "Traceback" not in response.text
    for word in words:
        assert word in body["message"], body["message"]


def _paid_once(
    env: ChainEnv, wall: Paywall, header: str, payer: Any, books: LedgerRevenueBook, store: Any
) -> None:
    """The retry with the same header delivers once; the chain and the books hold one payment."""
    retry = wall.get(header)
    assert retry.status_code == 200, retry.text
    assert retry.json()["secret"] == "paid-data"
    assert unb64_json(retry.headers["payment-response"])["success"] is True
    assert env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC
    (record,) = store.records()
    assert record.state == PaymentState.SETTLED and record.booked
    assert _revenue_balance(books, env.merchant) == PRICE_ATOMIC
    _books_balance(books)
    again = wall.get(header)
    assert again.status_code == 402 and again.json()["error"] == "nonce_already_used"
    assert env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC


# ------------------------------------------------------------------ refused connections


def test_refused_connections_answer_503_then_the_same_header_pays_once(
    env: ChainEnv, proxy: FaultProxy, proxied: RpcChain, store: PaymentStore, books: Any
) -> None:
    wall = Paywall(env, store, proxied, books)
    payer = env.new_payer()
    header = wall.header(payer)
    proxy.refuse()
    assert port_is_refused(proxy.port)
    started = time.monotonic()
    response = wall.get(header)
    assert time.monotonic() - started < ANSWER_BOUND_S
    _assert_unavailable(response, proxy.url, "did not answer")
    assert wall.calls == 0  # the handler never ran: nothing to serve, nothing to leak
    assert store.records() == [] and _revenue_balance(books, env.merchant) == 0
    proxy.restore()
    _paid_once(env, wall, header, payer, books, store)


# ------------------------------------------------------------------ JSON-RPC error objects


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("eth_call", -32000, "header not found"),
        ("eth_call", -32603, "internal error"),
        ("eth_call", -32005, "rate limit exceeded"),
        ("eth_estimateGas", -32005, "rate limit exceeded"),
        ("eth_sendRawTransaction", -32603, "internal error"),
        ("eth_getTransactionReceipt", -32000, "header not found"),
    ],
)
def test_a_json_rpc_error_object_is_a_503_never_a_500_or_a_wrong_refusal(
    method: str,
    code: int,
    message: str,
    env: ChainEnv,
    proxy: FaultProxy,
    proxied: RpcChain,
    store: PaymentStore,
    books: Any,
) -> None:
    wall = Paywall(env, store, proxied, books)
    payer = env.new_payer()
    header = wall.header(payer)
    proxy.error(method, code, message)
    started = time.monotonic()
    response = wall.get(header)
    assert time.monotonic() - started < ANSWER_BOUND_S
    _assert_unavailable(response, proxy.url, method, str(code), message)
    assert _revenue_balance(books, env.merchant) == 0
    proxy.clear()
    _paid_once(env, wall, header, payer, books, store)


def test_an_error_after_the_node_accepted_the_settlement_never_charges_twice(
    env: ChainEnv, proxy: FaultProxy, proxied: RpcChain, store: PaymentStore, books: Any
) -> None:
    """The node mines the transaction but the answer is lost: the retry finds it on chain."""
    wall = Paywall(env, store, proxied, books)
    payer = env.new_payer()
    header = wall.header(payer)
    relayer_nonce = env.chain.w3.eth.get_transaction_count(env.relayer.address)
    proxy.error("eth_sendRawTransaction", -32603, "internal error", relay=True)
    _assert_unavailable(wall.get(header), "eth_sendRawTransaction")
    assert env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC  # it did move
    (record,) = store.records()
    assert record.state == PaymentState.PENDING and not record.booked
    proxy.clear()
    _paid_once(env, wall, header, payer, books, store)
    # One settlement transaction in all: the retry read the chain instead of resending.
    assert env.chain.w3.eth.get_transaction_count(env.relayer.address) == relayer_nonce + 1


# ------------------------------------------------------------------ replies past the timeout


@pytest.mark.parametrize(
    "method", ["eth_call", "eth_sendRawTransaction", "eth_getTransactionReceipt"]
)
def test_a_reply_held_past_the_timeout_is_a_bounded_503_and_the_retry_pays_once(
    method: str,
    env: ChainEnv,
    proxy: FaultProxy,
    proxied: RpcChain,
    store: PaymentStore,
    books: Any,
) -> None:
    wall = Paywall(env, store, proxied, books)
    payer = env.new_payer()
    header = wall.header(payer)
    proxy.delay(method, HELD_S, times=1 if method == "eth_sendRawTransaction" else None)
    started = time.monotonic()
    response = wall.get(header)
    assert time.monotonic() - started < ANSWER_BOUND_S
    _assert_unavailable(response, proxy.url, "timed out")
    assert _revenue_balance(books, env.merchant) == 0
    proxy.clear()
    proxy.wait_idle()  # a held eth_sendRawTransaction reaches anvil late, as a slow node's would
    _paid_once(env, wall, header, payer, books, store)


# ------------------------------------------------------------------ the facilitator HTTP API


def test_the_facilitator_api_answers_503_on_faults_and_settles_once_after(
    env: ChainEnv, proxy: FaultProxy, proxied: RpcChain, store: PaymentStore, books: Any
) -> None:
    wall = Paywall(env, store, proxied, books)  # only to price and sign a payment
    payer = env.new_payer()
    header = wall.header(payer)
    payload = decode_payment_signature(header)
    body = {
        "x402Version": 2,
        "paymentPayload": unb64_json(header),
        "paymentRequirements": payload.accepted.to_wire(),  # type: ignore[union-attr]
    }
    api = facilitator_app(LocalFacilitator(proxied, env.relayer))

    async def post(path: str) -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://facilitator.test", timeout=30
        ) as client:
            return await client.post(path, json=body)

    proxy.refuse()
    verify = run(post("/verify"))
    assert verify.status_code == 503 and verify.json()["error"] == "unavailable"
    assert proxy.url in verify.json()["message"] and "Traceback" not in verify.text
    proxy.restore()
    assert run(post("/verify")).json()["isValid"] is True
    proxy.error("eth_sendRawTransaction", -32005, "rate limit exceeded")
    settle = run(post("/settle"))
    assert settle.status_code == 503 and "-32005" in settle.json()["message"]
    proxy.clear()
    settled = run(post("/settle"))
    assert settled.status_code == 200 and settled.json()["success"] is True, settled.text
    replay = run(post("/settle"))
    assert replay.status_code == 200 and replay.json()["success"] is False
    assert replay.json()["errorReason"] == "nonce_already_used"
    assert env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC


# ------------------------------------------------------------------ the reconcile CLI


@pytest.mark.parametrize("fault", ["refused", "held", "error"])
def test_ledger_reconcile_prints_one_line_and_exits_non_zero_on_a_fault(
    fault: str,
    env: ChainEnv,
    proxy: FaultProxy,
    ledger_url: str,
    books: Any,
    store: PaymentStore,
    tmp_path: Path,
) -> None:
    wall = Paywall(env, store, env.chain, books)  # one booked payment: addresses to scan
    assert wall.get(wall.header(env.new_payer())).status_code == 200
    if fault == "refused":
        proxy.refuse()
    elif fault == "held":
        proxy.delay("eth_getLogs", HELD_S)
    else:
        proxy.error("eth_getLogs", -32005, "rate limit exceeded")
    result = run_farthing(
        ["ledger", "reconcile", "--rpc-url", proxy.url, "--token", env.asset.address]
        + ["--database-url", ledger_url],
        env=cli_env(tmp_path / "data", FARTHING_WALLET_RPC_TIMEOUT_S=str(TIMEOUT_S)),
        timeout_s=60,
    )
    assert result.code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert proxy.url in lines[0]
    expected = {"refused": "did not answer", "held": "timed out", "error": "-32005"}[fault]
    assert expected in lines[0], lines[0]


# ------------------------------------------------------------------ the agent's paying client


def test_an_agent_paying_through_an_rpc_fault_pays_once_when_it_asks_again(
    env: ChainEnv, proxy: FaultProxy, proxied: RpcChain, tmp_path: Path
) -> None:
    """The seller's 503 leaves the agent's reservation open; asking again re-sends the same payment."""
    from farthing.agents.blog import paywalled_blog
    from farthing.agents.outcome import outcome_of
    from tests.agents.conftest import BLOG, make_world
    from tests.agents.conftest import PRICE_ATOMIC as BLOG_PRICE

    world = make_world(env.chain, tmp_path)
    try:
        app = paywalled_blog(
            facilitator=LocalFacilitator(proxied, world.relayer),
            store=world.store,
            pay_to=world.merchant,
            asset=world.asset,
        )
        url = f"{BLOG}/posts/quarter-penny"

        async def fetch() -> httpx.Response:
            async with world.client(app=app) as client:
                return await client.get(url)

        funds = world.token.balance_of(world.agent.address)
        proxy.error("eth_sendRawTransaction", -32005, "rate limit exceeded")
        refused = run(fetch())
        assert refused.status_code == 503 and "PAID-PART" not in refused.text
        first = outcome_of(refused)
        assert first is not None and first.status == "possible_spend", first
        assert len(world.open_reservations()) == 1  # held, not released: it may still settle
        proxy.clear()
        paid = run(fetch())
        assert paid.status_code == 200, paid.text
        second = outcome_of(paid)
        assert second is not None and second.status == "paid", second
        assert second.payment_id == first.payment_id  # the same payment, not a new one
        assert world.token.balance_of(world.agent.address) == funds - BLOG_PRICE
        assert world.open_reservations() == [] and world.posted_total() == BLOG_PRICE
        assert world.reconcile().breaks == ()
    finally:
        world.close()


def test_an_agent_whose_chain_fails_before_signing_keeps_no_reservation(
    env: ChainEnv, proxy: FaultProxy, proxied: RpcChain, tmp_path: Path
) -> None:
    """The wallet's balance read fails after the budget said yes: nothing is signed or held."""
    from farthing.agents import Payer, async_paying_client
    from farthing.agents.outcome import outcome_of
    from farthing.agents.settings import AgentSettings
    from tests.agents.conftest import BLOG, make_world

    world = make_world(env.chain, tmp_path)
    try:
        payer = Payer(
            signer=world.agent,
            chain=proxied,
            asset=world.asset,
            books=world.books,
            settings=AgentSettings(approval_poll_s=0.05, settle_retry_delay_s=0.05),
        )
        funds = world.token.balance_of(world.agent.address)
        proxy.error("eth_call", -32603, "internal error")

        async def fetch() -> httpx.Response:
            async with async_paying_client(
                payer, task_id="task-1", purpose="testing", transport=httpx.ASGITransport(world.app)
            ) as client:
                return await client.get(f"{BLOG}/posts/quarter-penny")

        answer = run(fetch())
        assert answer.status_code == 402 and "PAID-PART" not in answer.text
        outcome = outcome_of(answer)
        assert outcome is not None and outcome.status == "not_paid", outcome
        assert outcome.reason == "chain_unavailable"
        assert world.open_reservations() == [] and world.posted_total() == 0
        assert world.token.balance_of(world.agent.address) == funds
    finally:
        proxy.clear()
        world.close()
