"""Fixtures for the ledger tests: a migrated database on SQLite and on PostgreSQL.

Every test that takes ``database`` runs on both backends. The PostgreSQL
case gets a fresh schema (dropped afterwards) so parallel runs never collide,
and is skipped only when the server does not answer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from farthing.ledger import (
    AccountCode,
    AccountFlags,
    BudgetPolicy,
    CreateTransferResult,
    LedgerDatabase,
    LedgerSettings,
    NewAccount,
    NewTransfer,
    TransferCode,
    TransferFlags,
    create_accounts,
    create_transfers,
    lookup_accounts,
    set_budget,
    upgrade_database,
)

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_reachable: list[bool] = []


def postgres_reachable() -> bool:
    if not _reachable:
        try:
            with psycopg.connect(POSTGRES_URL, connect_timeout=3):
                _reachable.append(True)
        except psycopg.OperationalError:
            _reachable.append(False)
    return _reachable[0]


@pytest.fixture
def postgres_url_or_none() -> str | None:
    """The PostgreSQL URL when the server answers, else None (for optional cases)."""
    return POSTGRES_URL if postgres_reachable() else None


@pytest.fixture
def postgres_settings() -> Iterator[LedgerSettings]:
    """Settings for a fresh PostgreSQL schema, dropped after the test."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")
    schema = f"ledger_test_{uuid.uuid4().hex[:16]}"
    yield LedgerSettings(database_url=POSTGRES_URL, postgres_schema=schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_settings(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerSettings:
    if request.param == "sqlite":
        return LedgerSettings(data_dir=tmp_path, busy_timeout_s=30)
    settings: LedgerSettings = request.getfixturevalue("postgres_settings")
    return settings


@pytest.fixture
def database(ledger_settings: LedgerSettings) -> Iterator[LedgerDatabase]:
    db = LedgerDatabase(ledger_settings)
    upgrade_database(db)
    yield db
    db.dispose()


# The standard chart of accounts the tests use.
LEDGER = 1
OTHER_LEDGER = 2
FUNDING, BUDGET, PAYEE, PAYEE_2, FOREIGN = 1, 2, 3, 4, 5


@dataclass
class Books:
    """A funded budget and two payees, plus shortcuts that keep tests short."""

    db: LedgerDatabase
    next_id: int = 1_000
    # Test modules cannot import conftest, so the chart travels on the object.
    LEDGER: ClassVar[int] = LEDGER
    OTHER_LEDGER: ClassVar[int] = OTHER_LEDGER
    FUNDING: ClassVar[int] = FUNDING
    BUDGET: ClassVar[int] = BUDGET
    PAYEE: ClassVar[int] = PAYEE
    PAYEE_2: ClassVar[int] = PAYEE_2
    FOREIGN: ClassVar[int] = FOREIGN

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def transfer(self, *events: NewTransfer, now_ns: int | None = None) -> list[str]:
        with self.db.write() as session:
            results = create_transfers(session=session, transfers=list(events), now_ns=now_ns)
        return [str(r) for r in results]

    def reserve(
        self,
        amount: int,
        *,
        payee: int = PAYEE,
        timeout_s: int = 0,
        id: int | None = None,
        **kw: object,
    ) -> NewTransfer:
        return NewTransfer(
            id=self.new_id() if id is None else id,
            debit_account_id=BUDGET,
            credit_account_id=payee,
            amount=amount,
            ledger=LEDGER,
            code=TransferCode.PAYMENT,
            flags=TransferFlags.PENDING,
            timeout_s=timeout_s,
            **kw,  # type: ignore[arg-type]
        )

    def fund(self, amount: int, *, now_ns: int | None = None) -> None:
        event = NewTransfer(
            id=self.new_id(),
            debit_account_id=FUNDING,
            credit_account_id=BUDGET,
            amount=amount,
            ledger=LEDGER,
            code=TransferCode.FUNDING,
        )
        assert self.transfer(event, now_ns=now_ns) == [CreateTransferResult.OK]

    def balances(self, account_id: int) -> tuple[int, int, int, int]:
        """(debits_pending, debits_posted, credits_pending, credits_posted)."""
        with self.db.read() as session:
            (a,) = lookup_accounts(session=session, ids=[account_id])
            return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)

    def set_policy(self, **limits: object) -> str:
        with self.db.write() as session:
            policy = BudgetPolicy(account_id=BUDGET, agent_id="agent-1", **limits)  # type: ignore[arg-type]
            return str(set_budget(session=session, policy=policy))


def open_books(db: LedgerDatabase, *, budget: int = 0, now_ns: int | None = None) -> Books:
    dmnec = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    with db.write() as session:
        results = create_accounts(
            session=session,
            accounts=[
                NewAccount(id=FUNDING, ledger=LEDGER, code=AccountCode.FUNDING, label="funding"),
                NewAccount(
                    id=BUDGET, ledger=LEDGER, code=AccountCode.BUDGET, flags=dmnec, label="budget"
                ),
                NewAccount(id=PAYEE, ledger=LEDGER, code=AccountCode.PAYEE, label="payee"),
                NewAccount(id=PAYEE_2, ledger=LEDGER, code=AccountCode.PAYEE, label="payee 2"),
                NewAccount(id=FOREIGN, ledger=OTHER_LEDGER, code=AccountCode.PAYEE, label="eur"),
            ],
            now_ns=now_ns,
        )
    assert all(r.succeeded for r in results)
    books = Books(db)
    # A policy without limits: it makes BUDGET an agent's budget, so running
    # out is "exceeds_budget" rather than TigerBeetle's "exceeds_credits".
    assert books.set_policy() == "ok"
    if budget:
        books.fund(budget, now_ns=now_ns)
    return books


@pytest.fixture
def books(database: LedgerDatabase) -> Books:
    """The standard accounts, with 1,000,000 atomic units in the budget."""
    return open_books(database, budget=1_000_000)


@pytest.fixture
def make_books() -> object:
    """``open_books(db, budget=..., now_ns=...)`` for tests that need their own."""
    return open_books
