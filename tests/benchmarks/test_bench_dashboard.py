"""benchmarks/bench_dashboard.py runs on a tiny ledger and ends with its one JSON line.

Correctness only, never speed: a few thousand transfers on SQLite (and on
PostgreSQL when it answers), every page and endpoint asked twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_dashboard.py"


def run(*args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--transfers", "1200", "--agents", "8", "--requests", "2", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(report, dict)
    return report


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
