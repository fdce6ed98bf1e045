"""Ledger throughput: payments per second, reserved (pending) then posted.

Each writer reserves a batch of payments in one database transaction, then
posts the ones that were accepted in a second, the way an agent reserves
before signing and posts after settlement, batched like TigerBeetle's
requests. Cases: SQLite and PostgreSQL, with 1 writer and with 8 writer
processes. In the 8-writer cases every writer draws on ONE shared budget
funded for only part of the attempts, so writers contend for the same rows
and some reservations must be refused; afterwards the bench checks that no
budget went below zero and reports the overspend (which must be 0).

The last line of output is one JSON object:
{"bench":"ledger","sqlite_1w_per_s":…,"sqlite_8w_per_s":…,"postgres_1w_per_s":…,
 "postgres_8w_per_s":…,"overspend_atomic":0}
A backend that cannot be reached reports null.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from farthing.ledger import (
    AccountFlags,
    BudgetPolicy,
    LedgerDatabase,
    LedgerSettings,
    NewAccount,
    NewTransfer,
    TransferFlags,
    create_accounts,
    create_transfers,
    lookup_accounts,
    set_budget,
    upgrade_database,
)

FUNDING, PAYEE, BUDGET_BASE = 1, 2, 100
AMOUNT = 10_000  # 0.01 USDC


@dataclass(frozen=True)
class Job:
    settings_json: str
    budget_id: int
    first_id: int
    batch_size: int
    duration_s: float


def _writer(job: Job, start: Callable[[], None]) -> tuple[int, int, float, float]:
    """Run batches for ``duration_s``; return (paid, refused, started_at, finished_at)."""
    database = LedgerDatabase(LedgerSettings.model_validate_json(job.settings_json))
    next_id = job.first_id
    paid = refused = 0
    # Warm up (statement caches, connection pool) before the clock starts,
    # so eight cold starts are not measured while holding the write lock.
    warm = NewTransfer(
        id=job.first_id - 1, debit_account_id=job.budget_id, credit_account_id=PAYEE,
        amount=1, ledger=1, code=2, flags=TransferFlags.PENDING,
    )  # fmt: skip
    for event in (warm, NewTransfer.void(id=job.first_id - 2, pending_id=warm.id)):
        with database.write() as session:
            create_transfers(session=session, transfers=[event])
    start()
    started_at = time.time()
    deadline = started_at + job.duration_s
    while time.time() < deadline:
        reservations = [
            NewTransfer(
                id=next_id + i,
                debit_account_id=job.budget_id,
                credit_account_id=PAYEE,
                amount=AMOUNT,
                ledger=1,
                code=2,
                flags=TransferFlags.PENDING,
                timeout_s=600,
            )
            for i in range(job.batch_size)
        ]
        next_id += 2 * job.batch_size
        with database.write() as session:
            results = create_transfers(session=session, transfers=reservations)
        accepted = [r for r, result in zip(reservations, results, strict=True) if result == "ok"]
        refused += len(reservations) - len(accepted)
        posts = [NewTransfer.post(id=r.id + job.batch_size, pending_id=r.id) for r in accepted]
        with database.write() as session:
            posted = create_transfers(session=session, transfers=posts)
        paid += sum(1 for result in posted if result == "ok")
        if not accepted:
            break  # the shared budget is spent
    database.dispose()
    return paid, refused, started_at, time.time()


def _writer_process(job: Job, barrier: Any, results: Any) -> None:
    # The barrier releases every writer at once, after all have imported.
    results.put(_writer(job, lambda: barrier.wait(timeout=120)))


def _prepare(settings: LedgerSettings, budgets: list[tuple[int, int]]) -> None:
    database = LedgerDatabase(settings)
    upgrade_database(database)
    dmnec = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    accounts = [NewAccount(id=FUNDING, ledger=1, code=1), NewAccount(id=PAYEE, ledger=1, code=3)]
    accounts += [NewAccount(id=b, ledger=1, code=2, flags=dmnec) for b, _ in budgets]
    with database.write() as session:
        create_accounts(session=session, accounts=accounts)
        for budget_id, funds in budgets:
            set_budget(
                session=session,
                policy=BudgetPolicy(account_id=budget_id, agent_id=f"agent-{budget_id}"),
            )
            funding = NewTransfer(
                id=10**30 + budget_id, debit_account_id=FUNDING, credit_account_id=budget_id,
                amount=funds, ledger=1, code=1,
            )  # fmt: skip
            create_transfers(session=session, transfers=[funding])
    database.dispose()


def _overspend(settings: LedgerSettings, budget_ids: list[int]) -> int:
    database = LedgerDatabase(settings)
    with database.read() as session:
        accounts = lookup_accounts(session=session, ids=budget_ids)
    database.dispose()
    return sum(max(0, a.debits_posted + a.debits_pending - a.credits_posted) for a in accounts)


def run_case(
    settings: LedgerSettings, *, writers: int, args: argparse.Namespace
) -> tuple[float, int]:
    """Payments per second and overspend (atomic units) of one case."""
    # Enough budget for a generous rate, except in the shared case, where
    # the budget runs out part-way so refusals are exercised under contention.
    generous = int(args.seconds * 50_000) * AMOUNT
    if writers == 1:
        budgets = [(BUDGET_BASE, generous)]
    else:
        budgets = [(BUDGET_BASE, args.shared_budget_payments * AMOUNT)]
    _prepare(settings, budgets)
    jobs = [
        Job(settings.model_dump_json(), budgets[0][0], 10**12 * (w + 1), args.batch, args.seconds)
        for w in range(writers)
    ]
    if writers == 1:
        outcomes = [_writer(jobs[0], lambda: None)]
    else:
        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(writers), context.Queue()
        processes = [
            context.Process(target=_writer_process, args=(job, barrier, results)) for job in jobs
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=args.seconds + 180) for _ in processes]
        for process in processes:
            process.join(timeout=30)
    paid = sum(o[0] for o in outcomes)
    elapsed = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    overspend = _overspend(settings, [b for b, _ in budgets])
    print(
        f"{(settings.database_url or 'sqlite').split(':')[0].split(':')[0]:<10} writers={writers} paid={paid} "
        f"refused={sum(o[1] for o in outcomes)} elapsed={elapsed:.2f}s "
        f"-> {paid / elapsed:,.0f} payments/s, overspend={overspend}",
        file=sys.stderr,
        flush=True,
    )
    return paid / elapsed, overspend


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="run time per case (default 3)")
    parser.add_argument(
        "--batch", type=int, default=500, help="payments per database transaction (default 500)"
    )
    parser.add_argument(
        "--writers", type=int, default=8, help="processes in the multi-writer cases (default 8)"
    )
    parser.add_argument(
        "--shared-budget-payments", type=int, default=20_000,
        help="payments the one shared budget allows in the multi-writer cases (default 20000)",
    )  # fmt: skip
    parser.add_argument(
        "--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test",
        help="server for the PostgreSQL cases; each run uses a fresh schema, dropped afterwards",
    )  # fmt: skip
    parser.add_argument("--skip-postgres", action="store_true", help="report null for PostgreSQL")
    args = parser.parse_args()
    result: dict[str, object] = {"bench": "ledger"}
    overspend = 0
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        for writers, key in ((1, "sqlite_1w_per_s"), (args.writers, "sqlite_8w_per_s")):
            path = Path(tmp) / f"ledger-{writers}.sqlite"
            settings = LedgerSettings(database_url=f"sqlite:///{path}", busy_timeout_s=60)
            rate, over = run_case(settings, writers=writers, args=args)
            result[key], overspend = round(rate), overspend + over
    for writers, key in ((1, "postgres_1w_per_s"), (args.writers, "postgres_8w_per_s")):
        result[key] = None
        if args.skip_postgres or not _reachable(args.postgres_url):
            continue
        schema = f"bench_ledger_{uuid.uuid4().hex[:12]}"
        settings = LedgerSettings(
            database_url=args.postgres_url, postgres_schema=schema, pool_size=2
        )
        try:
            rate, over = run_case(settings, writers=writers, args=args)
            result[key], overspend = round(rate), overspend + over
        finally:
            with psycopg.connect(args.postgres_url, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    result["overspend_atomic"] = overspend
    print(json.dumps(result, separators=(",", ":")), flush=True)


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unreachable at {url}: {exc}".splitlines()[0], file=sys.stderr)
        return False


if __name__ == "__main__":
    main()
