"""The ledger benchmark runs on a tiny workload and ends with its one JSON line, with no overspend.

It runs the real script as a subprocess with two writers for a fraction of a
second per case; speed is measured by running the script itself, not here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests import zygote

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ledger.py"
KEYS = [
    "bench",
    "sqlite_1w_per_s",
    "sqlite_8w_per_s",
    "postgres_1w_per_s",
    "postgres_8w_per_s",
    "overspend_atomic",
]


def test_bench_prints_its_json_line(postgres_url_or_none: str | None) -> None:
    args = [
        "--seconds",
        "0.3",
        "--batch",
        "20",
        "--writers",
        "2",
        "--shared-budget-payments",
        "100",
    ]
    args += (
        ["--postgres-url", postgres_url_or_none] if postgres_url_or_none else ["--skip-postgres"]
    )
    proc = zygote.run_process(
        [sys.executable, str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(report) == KEYS
    assert report["bench"] == "ledger" and report["overspend_atomic"] == 0
    assert report["sqlite_1w_per_s"] > 0 and report["sqlite_8w_per_s"] > 0
    if postgres_url_or_none:
        assert report["postgres_1w_per_s"] > 0 and report["postgres_8w_per_s"] > 0


def test_bench_help() -> None:
    proc = zygote.run_process(
        [sys.executable, str(SCRIPT), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--seconds" in proc.stdout
