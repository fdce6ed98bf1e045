"""Each benchmark script runs and ends with one well-formed JSON line.

This checks the scripts' correctness on a tiny workload, never their speed:
performance is measured by running the scripts themselves, not in tests.
"""

from __future__ import annotations

from tests.benchmarks.scripts import run_bench


def test_bench_verify_prints_its_json_line() -> None:
    report = run_bench("bench_verify.py", "--count", "50", "--duration-s", "0.2")
    assert report["bench"] == "verify"
    assert set(report) >= {"fast_per_s", "eth_account_per_s", "ratio"}
    for key in ("fast_per_s", "eth_account_per_s", "ratio"):
        assert isinstance(report[key], (int, float)) and report[key] > 0
