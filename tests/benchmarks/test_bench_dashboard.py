"""benchmarks/bench_dashboard.py runs on a tiny ledger and ends with its one JSON line.

Correctness only, never speed: a few thousand transfers on SQLite (and on
PostgreSQL when it answers), every page and endpoint asked twice.
"""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import run_bench


def run(*args: str) -> dict[str, object]:
    sizes = ("--transfers", "1200", "--agents", "8", "--requests", "2")
    return run_bench("bench_dashboard.py", *sizes, *args)


def check(report: dict[str, object], backend: str) -> None:
    assert report["bench"] == "dashboard" and report["agents"] == 8
    section = report[backend]
    assert isinstance(section, dict)
    endpoints = section["endpoints"]
    assert {"page /", "page /agents/{id}", "page /audit", "data /api/live"} <= set(endpoints)
    for numbers in endpoints.values():
        assert 0 < numbers["p50_ms"] <= numbers["p95_ms"]


def test_bench_dashboard_on_sqlite() -> None:
    check(run("--backend", "sqlite"), "sqlite")


@pytest.mark.postgres
def test_bench_dashboard_on_postgres() -> None:
    from tests.ledger.conftest import postgres_reachable

    if not postgres_reachable():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    check(run("--backend", "postgres"), "postgres")
