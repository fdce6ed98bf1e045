"""``benchmarks/bench_inference.py`` runs on a tiny workload and ends with one well-formed JSON line.

It checks the script's correctness, never its speed (the numbers are in
``docs/inference.md``); the upstream is the script's own stand-in (in-process,
and under uvicorn for the streamed metered chat, paid through a channel on
anvil to the gateway run as a process of its own, whose charges must be
exact).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests import zygote

pytestmark = pytest.mark.anvil

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_inference.py"


def test_bench_inference_prints_its_json_line() -> None:
    proc = zygote.run_process(
        [
            sys.executable,
            str(SCRIPT),
            "--calls",
            "5",
            "--price-duration-s",
            "0.05",
            "--stream-calls",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bench"] == "inference"
    assert report["calls"] == 5
    for key in ("direct_ms", "gateway_ms", "price_sheets_per_s"):
        assert isinstance(report[key], (int, float)) and report[key] > 0
    assert report["stream_calls"] == 2
    for key in ("stream_ttft_direct_ms", "stream_ttft_gateway_ms", "stream_ttft_ratio"):
        assert isinstance(report[key], (int, float)) and report[key] > 0
    assert report["stream_charged_atomic"] > 0
    assert report["stream_charge_error_atomic"] == 0  # every charge exactly its usage's price
