"""``benchmarks/bench_paywall.py`` runs on a tiny workload and ends with its one JSON line.

This checks the script's correctness (both servers start, pay and settle on
anvil), never its speed: performance is measured by running the script itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests import zygote

pytestmark = pytest.mark.anvil

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_paywall.py"


def test_bench_paywall_prints_its_json_line() -> None:
    proc = zygote.run_process(
        [sys.executable, str(SCRIPT), "--paid", "6", "--seconds", "0.3", "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bench"] == "paywall"
    for key in ("unpaid_per_s", "paid_per_s", "x402_sdk_paid_per_s", "ratio_vs_x402"):
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["settled_on_chain"] == 12  # six paid requests through each server
