"""Eight writer processes cannot overspend one budget: exactly N of 1,000 attempts succeed.

Real processes (started with subprocess, all released at the same instant)
race to reserve against a budget funded for exactly N payments, on a SQLite
file and on PostgreSQL. Every refusal must be ``exceeds_budget``, the books
must balance and the audit chain must verify afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from farthing.ledger import (
    LedgerDatabase,
    LedgerSettings,
    lookup_accounts,
    upgrade_database,
    verify,
)
from tests import zygote

WORKERS = 8
ATTEMPTS = 1_000
ALLOWED = 137
AMOUNT = 10_000
WORKER = Path(__file__).with_name("budget_worker.py")


def _race(settings: LedgerSettings, make_books) -> Counter[str]:
    database = LedgerDatabase(settings)
    upgrade_database(database)
    make_books(database, budget=ALLOWED * AMOUNT)
    database.dispose()
    payload = settings.model_dump_json(
        include={"database_url", "postgres_schema", "busy_timeout_s"}
    )
    start_at = time.time() + 2.5  # time for every interpreter to import the ledger
    per_worker = ATTEMPTS // WORKERS
    processes = [
        zygote.spawn(
            [sys.executable, str(WORKER), payload]
            + [str(10_000 + i * per_worker), str(per_worker), str(AMOUNT), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    totals: Counter[str] = Counter()
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        totals.update(json.loads(out))
    database = LedgerDatabase(settings)
    with database.read() as session:
        (budget,) = lookup_accounts(session=session, ids=[2])
        report = verify(session=session)
    database.dispose()
    assert report.ok, report.problems
    assert budget.debits_pending + budget.debits_posted == ALLOWED * AMOUNT == budget.credits_posted
    return totals


def _check(totals: Counter[str]) -> None:
    assert totals["ok"] == ALLOWED
    assert totals["exceeds_budget"] == ATTEMPTS - ALLOWED
    assert sum(v for k, v in totals.items() if not k.startswith("post_")) == ATTEMPTS
    assert set(totals) <= {"ok", "exceeds_budget", "post_ok"}


def test_eight_processes_on_sqlite(tmp_path: Path, make_books) -> None:
    settings = LedgerSettings(database_url=f"sqlite:///{tmp_path}/race.sqlite", busy_timeout_s=60)
    _check(_race(settings, make_books))


@pytest.mark.postgres
def test_eight_processes_on_postgres(postgres_settings: LedgerSettings, make_books) -> None:
    _check(_race(postgres_settings, make_books))
