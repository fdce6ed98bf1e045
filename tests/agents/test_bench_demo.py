"""`benchmarks/bench_demo.py` runs the real demo once and ends with one well-formed JSON line.

It checks the script, not the speed: the 15 s target is measured by running
the benchmark itself (see docs/agents.md for the numbers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests import zygote

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_demo.py"


def test_bench_demo_prints_its_json_line() -> None:
    proc = zygote.run_process(
        [sys.executable, str(SCRIPT), "--runs", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bench"] == "demo" and report["chain"] == "memory" and report["runs"] == 1
    assert report["payments"] == 2
    assert 0 < report["to_last_paid_s"] <= report["total_s"]
