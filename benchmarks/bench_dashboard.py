"""How fast the dashboard's pages and data endpoints answer over a million transfers.

    python benchmarks/bench_dashboard.py                      # 1,000,000 transfers, 1,000 agents
    python benchmarks/bench_dashboard.py --transfers 2000 --agents 10 --backend sqlite

It fills a throwaway ledger (a temporary SQLite file, and a fresh schema in
the PostgreSQL at --postgres-url) through the ledger's real tables, migrated
by the real Alembic migrations: one funding transfer per agent, then
payments as pending/post pairs spread over --days days (the last ones still
open), with the hourly budget-usage buckets the ledger keeps for them. Rows
go in with executemany (SQLite) or COPY (PostgreSQL); writing them through
``create_transfers`` would take hours and prove nothing about reading.

Then it asks each page and data endpoint --requests times through
``httpx.ASGITransport`` (the real app, no network) and prints p50 and p95 in
milliseconds. The background audit verifier is off: it replays the whole log
by design and is not a page. One JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from farthing.dashboard import DashboardSettings, create_app
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.ledger.budget import NS_PER_HOUR, TOTAL_PAYEE, hour_of
from farthing.ledger.codes import AccountCode, TransferCode
from farthing.ledger.flags import AccountFlags, TransferFlags

PAYEES = 50
OPEN_PER_AGENT = 1
PRICE = 10_000  # 0.01 USDC


def _hex(value: int) -> str:
    return format(value, "032x")


def _rows(transfers: int, agents: int, days: int, now_ns: int) -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(12)
    start = now_ns - days * 86_400 * 10**9
    asset = [("eip155:31337/erc20:0x" + "a" * 40, 1, 6, "USDC", start)]
    accounts, budgets, moves = [], [], []
    budget_id = {a: 10_000 + a for a in range(agents)}
    funding_id = {a: 20_000 + a for a in range(agents)}
    payee_id = {p: 30_000 + p for p in range(PAYEES)}
    balances: dict[int, list[int]] = {}
    next_id = 10**9

    def account(aid: int, code: int, flags: int, label: str) -> None:
        balances[aid] = [0, 0, 0, 0]
        accounts.append((aid, code, flags, label))

    for a in range(agents):
        account(
            budget_id[a],
            AccountCode.BUDGET,
            AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            f"agent-{a}",
        )
        account(funding_id[a], AccountCode.FUNDING, 0, f"funding-{a}")
        budgets.append(
            (_hex(budget_id[a]), f"agent-{a:04d}", 1_000_000, 5_000_000, 1_000_000, None, start)
        )
    for p in range(PAYEES):
        account(payee_id[p], AccountCode.PAYEE, 0, f"payee-{p}")
    # Each payment is a pending transfer plus its post, except the ones left open.
    payments = max(0, (transfers - agents + agents * OPEN_PER_AGENT) // 2)
    per_agent_funds = (payments // max(1, agents) + 2) * PRICE * 2
    for a in range(agents):
        next_id += 1
        moves.append(
            (next_id, funding_id[a], budget_id[a], per_agent_funds, None, 0, start, None, None)
        )
        balances[funding_id[a]][1] += per_agent_funds
        balances[budget_id[a]][3] += per_agent_funds
    usage: dict[tuple[int, int, int], int] = {}
    pending: list[int] = []
    span = now_ns - start
    times = sorted(start + rng.randrange(span) for _ in range(payments))
    for i, ts in enumerate(times):
        a = rng.randrange(agents)
        p = rng.randrange(PAYEES)
        amount = PRICE * rng.randint(1, 3)
        debit, credit = budget_id[a], payee_id[p]
        next_id += 1
        pid = next_id
        resource = f"https://site{p % 7}.example/posts/{p}"
        moves.append(
            (
                pid,
                debit,
                credit,
                amount,
                None,
                int(TransferFlags.PENDING),
                ts,
                f"task-{a}-{i % 5}",
                resource,
            )
        )
        still_open = i >= payments - agents * OPEN_PER_AGENT
        if still_open:
            pending.append(pid)
            balances[debit][0] += amount
            balances[credit][2] += amount
        else:
            next_id += 1
            moves.append(
                (
                    next_id,
                    debit,
                    credit,
                    amount,
                    pid,
                    int(TransferFlags.POST_PENDING_TRANSFER),
                    ts + 2 * 10**9,
                    f"task-{a}-{i % 5}",
                    resource,
                )
            )
            balances[debit][1] += amount
            balances[credit][3] += amount
        hour = hour_of(ts)
        for payee in (TOTAL_PAYEE, credit):
            key = (debit, payee, hour)
            usage[key] = usage.get(key, 0) + amount
    account_rows = [
        (_hex(aid), 1, int(code), int(flags), *balances[aid], _hex(0), "0" * 16, 0, label, start)
        for aid, code, flags, label in accounts
    ]
    transfer_rows = []
    for tid, debit, credit, amount, pid, flags, ts, task, resource in moves:
        is_payment = resource is not None
        transfer_rows.append((
            _hex(tid), _hex(debit), _hex(credit), amount, None if pid is None else _hex(pid), 0, None, 1,
            int(TransferCode.PAYMENT if is_payment else TransferCode.FUNDING), flags, ts, _hex(0),
            "0" * 16, 0, "eip155:31337", "0x" + "a" * 40, None,
            ("0x" + format(tid, "064x")) if flags & TransferFlags.POST_PENDING_TRANSFER else None,
            None, None, None, resource, task, "benchmark" if is_payment else None, None, None,
            None, ts // 10**9 + 600 if is_payment else None,
        ))  # fmt: skip
    return {
        "ledger_asset": asset,
        "ledger_account": account_rows,
        "ledger_budget": budgets,
        "ledger_transfer": transfer_rows,
        "ledger_pending": [(_hex(pid), None) for pid in pending],
        "ledger_budget_usage": [
            (_hex(acc), _hex(payee), hour, amount) for (acc, payee, hour), amount in usage.items()
        ],
    }


COLUMNS = {
    "ledger_asset": "id, ledger, decimals, symbol, timestamp_ns",
    "ledger_account": "id, ledger, code, flags, debits_pending, debits_posted, credits_pending, "
    "credits_posted, user_data_128, user_data_64, user_data_32, label, timestamp_ns",
    "ledger_budget": "account_id, agent_id, payment_cap, daily_limit, payee_daily_cap, "
    "asset_allowlist, timestamp_ns",
    "ledger_transfer": "id, debit_account_id, credit_account_id, amount, pending_id, timeout_s, "
    "expires_at_ns, ledger, code, flags, timestamp_ns, user_data_128, user_data_64, user_data_32, "
    "network, token_address, authorization_nonce, tx_hash, block_number, payer_address, "
    "payee_address, resource, task_id, purpose, fiat_rate, fiat_currency, valid_after, valid_before",
    "ledger_pending": "transfer_id, expires_at_ns",
    "ledger_budget_usage": "account_id, payee_account_id, hour, amount",
}


def load(database: LedgerDatabase, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, data in rows.items():
            columns = COLUMNS[table]
            if database.dialect_name == "sqlite":
                marks = ", ".join("?" * len(columns.split(",")))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", data)
            else:
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in data:
                        copy.write_row(row)
        cursor.execute("ANALYZE")  # the planner should see the real sizes
        raw.commit()
    finally:
        raw.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1)}


async def measure(url: str, agents: int, requests: int) -> dict[str, dict[str, float]]:
    app = create_app(DashboardSettings(database_url=url), start_verifier=False)
    rng = random.Random(3)
    endpoints = {
        "page /": lambda: "/",
        "page /agents/{id}": lambda: f"/agents/agent-{rng.randrange(agents):04d}",
        "page /approvals": lambda: "/approvals",
        "page /reconciliation": lambda: "/reconciliation",
        "page /audit": lambda: "/audit",
        "data /api/live": lambda: "/api/live",
        "data /export/spend.json": lambda: "/export/spend.json",
        "data /export/revenue.csv": lambda: "/export/revenue.csv",
        "data /export/agent-payments.json": lambda: f"/export/agent-payments.json?agent=agent-{rng.randrange(agents):04d}",
    }  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
    ):
        for name, path in endpoints.items():
            await http.get(path())  # warm the caches once
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(path())
                samples.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(
                        f"{name} answered {response.status_code}: {response.text[:200]}"
                    )
            results[name] = percentiles(samples)
    return results


def run_backend(
    kind: str, args: argparse.Namespace, rows: dict[str, list[tuple[Any, ...]]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        schema = None
        if kind == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'books.sqlite'}"
            settings = LedgerSettings(database_url=url, sqlite_synchronous="NORMAL")
        else:
            schema = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
            url = args.postgres_url
            settings = LedgerSettings(database_url=url, postgres_schema=schema)
        database = LedgerDatabase(settings)
        try:
            upgrade_database(database)
            started = time.perf_counter()
            load(database, rows)
            load_s = time.perf_counter() - started
            app_url = url if schema is None else f"{url}?options=-csearch_path%3D{schema}"
            endpoints = asyncio.run(measure(app_url, args.agents, args.requests))
        finally:
            if schema is not None:
                with database.engine.begin() as connection:
                    connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            database.dispose()
    worst = max(v["p95_ms"] for v in endpoints.values())
    return {"load_s": round(load_s, 1), "p95_max_ms": worst, "endpoints": endpoints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    now = time.time_ns()
    started = time.perf_counter()
    rows = _rows(args.transfers, args.agents, args.days, now - NS_PER_HOUR // 60)
    print(f"generated {len(rows['ledger_transfer'])} transfers in {time.perf_counter() - started:.1f}s",
          file=sys.stderr)  # fmt: skip
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    report: dict[str, Any] = {
        "bench": "dashboard",
        "transfers": len(rows["ledger_transfer"]),
        "agents": args.agents,
        "days": args.days,
        "requests": args.requests,
    }
    for kind in backends:
        report[kind] = run_backend(kind, args, rows)
        print(f"{kind}: {json.dumps(report[kind])}", file=sys.stderr)
    report["p95_max_ms"] = max(report[k]["p95_max_ms"] for k in backends)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
