"""Each benchmark script runs and ends with one well-formed JSON line.

This checks the scripts' correctness on a tiny workload, never their speed:
performance is measured by running the scripts themselves, not in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_bench(script: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    report = json.loads(last)
    assert isinstance(report, dict)
    return report


def test_bench_verify_prints_its_json_line() -> None:
    report = run_bench("bench_verify.py", "--count", "50", "--duration-s", "0.2")
    assert report["bench"] == "verify"
    assert set(report) >= {"fast_per_s", "eth_account_per_s", "ratio"}
    for key in ("fast_per_s", "eth_account_per_s", "ratio"):
        assert isinstance(report[key], (int, float)) and report[key] > 0
