"""The agents' books work on PostgreSQL too: tables made on first use, durable policy, racing reservations.

A fresh PostgreSQL schema per test (skipped only when the server is
unreachable). Twenty reservations race from two threads, each on its own
connection, for a task budget that fits seven: exactly seven win, the rest
are refused with ``exceeds_task_budget``, because the budget sums run inside
the ledger's locked database transaction. Approvals and the policy round-trip.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from farthing.agents.approvals import decide_approval, request_approval
from farthing.agents.books import AgentBooks
from farthing.agents.policy import SpendPolicy
from farthing.agents.reservations import PaymentIntent, reserve, task_spend
from farthing.ledger import LedgerDatabase, LedgerSettings, new_id, upgrade_database
from farthing.wallet.money import Asset
from tests.ledger.conftest import POSTGRES_URL, postgres_reachable

pytestmark = pytest.mark.postgres

USDC = Asset("eip155:31337", "0x" + "11" * 20, 6, "USD Coin", "2", "USDC")
AGENT = "0x" + "aa" * 20
PAYEE = "0x" + "bb" * 20


@pytest.fixture
def database() -> Iterator[LedgerDatabase]:
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")
    schema = f"agents_test_{uuid.uuid4().hex[:16]}"
    db = LedgerDatabase(LedgerSettings(database_url=POSTGRES_URL, postgres_schema=schema))
    upgrade_database(db)
    yield db
    db.dispose()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def intent(task_id: str, amount: int) -> PaymentIntent:
    payment_id = new_id()
    return PaymentIntent(
        payment_id=payment_id,
        payer=AGENT,
        pay_to=PAYEE,
        amount=amount,
        resource=f"http://blog.test/{payment_id}",
        nonce=payment_id.to_bytes(32, "big"),
        valid_after=0,
        valid_before=int(time.time()) + 300,
        task_id=task_id,
    )


def test_racing_reservations_never_pass_the_task_budget(database: LedgerDatabase) -> None:
    books = AgentBooks(database, agent_id="pg-agent", asset=USDC).ensure()
    books.book_funding(amount=1_000_000, to_address=AGENT, tx_hash="0x" + "cc" * 32, block_number=1)
    books.start_task("race", 7_000)
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def racer() -> None:
        mine = AgentBooks(database, agent_id="pg-agent", asset=USDC)
        for _ in range(10):
            outcome = reserve(mine, intent("race", 1_000))
            with lock:
                results[outcome] += 1

    threads = [threading.Thread(target=racer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == Counter({"ok": 7, "exceeds_task_budget": 13})
    with database.read() as session:
        assert task_spend(session, books.budget_account_id, "race") == 7_000


def test_policy_and_approvals_round_trip(database: LedgerDatabase) -> None:
    books = AgentBooks(database, agent_id="pg-agent", asset=USDC).ensure()
    policy = SpendPolicy(
        payment_cap=5_000,
        total_budget=20_000,
        hosts_denied=frozenset({"evil.test"}),
        approval_above=1,
    )
    books.set_policy(policy)
    assert AgentBooks(database, agent_id="pg-agent", asset=USDC).policy() == policy
    books.book_funding(amount=100_000, to_address=AGENT, tx_hash="0x" + "dd" * 32, block_number=2)
    assert reserve(books, intent("t", 6_000)) == "exceeds_payment_cap"
    request = request_approval(
        database, agent_id="pg-agent", asset=USDC, amount=2, pay_to=PAYEE, resource="r"
    )
    assert decide_approval(database, request.id, approve=False, note="no").status == "denied"
