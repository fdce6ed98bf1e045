"""Random pending/post/void/expire sequences, with retries, never unbalance the books or overspend a budget.

A Hypothesis ``RuleBasedStateMachine`` drives the real repository on SQLite
(and on PostgreSQL, with fewer examples) with an injected clock. A small
reference model predicts every post and void, and after every step the
database must show Σdebits_posted = Σcredits_posted, Σdebits_pending =
Σcredits_pending, a budget that is not negative, and balances equal to the
model's. Each example ends with a clean ``verify`` of the audit chain.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select, text

from farthing.ledger import (
    Account,
    LedgerDatabase,
    LedgerSettings,
    NewTransfer,
    create_transfers,
    expire_pending,
    upgrade_database,
    verify,
)

S = 10**9
START_NS = 1_750_000_000 * S


@dataclass
class Reservation:
    amount: int
    expires_at_ns: int | None
    state: str = "open"  # open, posted, voided, expired
    posted: int = 0


class LedgerMachine(RuleBasedStateMachine):
    open_database: ClassVar[object]
    make_books: ClassVar[object]

    def __init__(self) -> None:
        super().__init__()
        self.db: LedgerDatabase = type(self).open_database()  # type: ignore[operator]
        self.funded = 50_000
        self.books = type(self).make_books(self.db, budget=self.funded, now_ns=START_NS)  # type: ignore[operator]
        self.now_ns = START_NS + S
        self.reservations: dict[int, Reservation] = {}
        self.submitted: list[tuple[NewTransfer, str]] = []
        self.spent_single_phase = 0

    def submit(self, event: NewTransfer) -> str:
        with self.db.write() as session:
            (result,) = create_transfers(session=session, transfers=[event], now_ns=self.now_ns)
        self.submitted.append((event, str(result)))
        self.now_ns += 1_000
        return str(result)

    def _open_amount(self) -> int:
        return sum(r.amount for r in self.reservations.values() if r.state == "open")

    def _posted_amount(self) -> int:
        return sum(r.posted for r in self.reservations.values()) + self.spent_single_phase

    @rule(
        amount=st.integers(1, 20_000),
        timeout_s=st.sampled_from([0, 5, 60]),
        second_payee=st.booleans(),
    )
    def reserve(self, amount: int, timeout_s: int, second_payee: bool) -> None:
        payee = self.books.PAYEE_2 if second_payee else self.books.PAYEE
        event = self.books.reserve(amount, payee=payee, timeout_s=timeout_s)
        available = self.funded - self._open_amount() - self._posted_amount()
        result = self.submit(event)
        assert result == ("ok" if amount <= available else "exceeds_budget")
        if result == "ok":
            expires = self.now_ns - 1_000 + timeout_s * S if timeout_s else None
            self.reservations[event.id] = Reservation(amount, expires)

    @rule(amount=st.integers(1, 5_000))
    def pay_directly(self, amount: int) -> None:
        event = NewTransfer(
            id=self.books.new_id(), debit_account_id=self.books.BUDGET, credit_account_id=self.books.PAYEE,
            amount=amount, ledger=self.books.LEDGER, code=2,
        )  # fmt: skip
        available = self.funded - self._open_amount() - self._posted_amount()
        result = self.submit(event)
        assert result == ("ok" if amount <= available else "exceeds_budget")
        if result == "ok":
            self.spent_single_phase += amount

    def _expected(self, reservation: Reservation) -> str | None:
        if reservation.state != "open":
            return {"posted": "pending_transfer_already_posted", "voided": "pending_transfer_already_voided",
                    "expired": "pending_transfer_expired"}[reservation.state]  # fmt: skip
        if reservation.expires_at_ns is not None and reservation.expires_at_ns <= self.now_ns:
            return "pending_transfer_expired"
        return None

    @rule(data=st.data(), fraction=st.sampled_from([None, 1, 2, 3]))
    def post(self, data: st.DataObject, fraction: int | None) -> None:
        if not self.reservations:
            return
        pending_id = data.draw(st.sampled_from(sorted(self.reservations)))
        reservation = self.reservations[pending_id]
        amount = None if fraction is None else max(1, reservation.amount // fraction)
        expected = self._expected(reservation) or "ok"
        assert (
            self.submit(
                NewTransfer.post(id=self.books.new_id(), pending_id=pending_id, amount=amount)
            )
            == expected
        )
        if expected == "ok":
            reservation.state, reservation.posted = (
                "posted",
                reservation.amount if amount is None else amount,
            )

    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        if not self.reservations:
            return
        pending_id = data.draw(st.sampled_from(sorted(self.reservations)))
        reservation = self.reservations[pending_id]
        expected = self._expected(reservation) or "ok"
        assert (
            self.submit(NewTransfer.void(id=self.books.new_id(), pending_id=pending_id)) == expected
        )
        if expected == "ok":
            reservation.state = "voided"

    @rule(seconds=st.sampled_from([1, 6, 61]))
    def tick(self, seconds: int) -> None:
        self.now_ns += seconds * S

    @rule()
    def sweep(self) -> None:
        with self.db.write() as session:
            expired = expire_pending(session=session, now_ns=self.now_ns)
        due = {
            pid for pid, r in self.reservations.items()
            if r.state == "open" and r.expires_at_ns is not None and r.expires_at_ns <= self.now_ns
        }  # fmt: skip
        assert set(expired) == due
        for pid in due:
            self.reservations[pid].state = "expired"

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        if not self.submitted:
            return
        event, first = data.draw(st.sampled_from(self.submitted))
        result = self.submit(event)
        if first == "ok":
            assert result == "exists"

    @invariant()
    def books_balance(self) -> None:
        with self.db.read() as session:
            sums = session.execute(
                select(
                    func.sum(Account.debits_posted), func.sum(Account.credits_posted),
                    func.sum(Account.debits_pending), func.sum(Account.credits_pending),
                    func.min(func.least(Account.debits_posted, Account.credits_posted,
                                        Account.debits_pending, Account.credits_pending))
                    if self.db.dialect_name != "sqlite" else
                    func.min(func.min(Account.debits_posted, Account.credits_posted,
                                      Account.debits_pending, Account.credits_pending)),
                )
            ).one()  # fmt: skip
            budget = session.get(Account, self.books.BUDGET)
        assert sums[0] == sums[1] and sums[2] == sums[3]
        assert sums[4] >= 0
        assert budget is not None
        assert budget.credits_posted - budget.debits_posted - budget.debits_pending >= 0
        assert (budget.debits_pending, budget.debits_posted) == (
            self._open_amount(),
            self._posted_amount(),
        )

    def teardown(self) -> None:
        with self.db.read() as session:
            report = verify(session=session)
        self.db.dispose()
        assert report.ok, report.problems


def _run(open_database: object, make_books: object, max_examples: int) -> None:
    machine = type("Machine", (LedgerMachine,), {"open_database": staticmethod(open_database),
                                                  "make_books": staticmethod(make_books)})  # fmt: skip
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )


def test_random_operations_on_sqlite(tmp_path: Path, make_books: object) -> None:
    template = tmp_path / "template.sqlite"
    template_db = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{template}"))
    upgrade_database(template_db)
    template_db.dispose()  # closing the last connection checkpoints the WAL into the file
    counter = itertools.count()

    def open_database() -> LedgerDatabase:
        path = tmp_path / f"example-{next(counter)}.sqlite"
        shutil.copyfile(template, path)
        return LedgerDatabase(
            LedgerSettings(database_url=f"sqlite:///{path}", sqlite_synchronous="NORMAL")
        )

    _run(open_database, make_books, max_examples=60)


@pytest.mark.postgres
def test_random_operations_on_postgres(
    postgres_settings: LedgerSettings, make_books: object
) -> None:
    migrated = LedgerDatabase(postgres_settings)
    upgrade_database(migrated)
    migrated.dispose()

    def open_database() -> LedgerDatabase:
        database = LedgerDatabase(postgres_settings)
        with database.engine.begin() as connection:
            connection.execute(text(
                "TRUNCATE ledger_asset, ledger_account, ledger_transfer, ledger_pending, ledger_budget, "
                "ledger_budget_usage, ledger_audit_entry"))  # fmt: skip
            connection.execute(
                text("UPDATE ledger_audit_head SET sequence = 0, hash = :h"), {"h": "0" * 64}
            )
        return database

    _run(open_database, make_books, max_examples=12)
