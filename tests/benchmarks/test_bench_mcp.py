"""benchmarks/bench_mcp.py runs end to end on anvil with tiny counts and ends with its one JSON line.

A real run of the script as a process (its own anvil, our ``PaidTools``
server and the x402 SDK's MCP payment wrapper each under uvicorn, the SDK's
``x402MCPSession`` paying both): the line carries the keys the issue names,
rates are positive, and every paid call of each server moved exactly the
price to the merchant on chain. Speed is not checked here; the script itself
is the measurement.
"""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import run_bench

pytestmark = pytest.mark.anvil

KEYS = ["bench", "ours_per_s", "x402_sdk_per_s", "ratio_vs_x402_sdk"]
CALLS = 4


def test_bench_mcp_prints_its_json_line() -> None:
    report = run_bench("bench_mcp.py", "--calls", str(CALLS), "--concurrency", "2", "--rounds", "2")
    assert list(report)[: len(KEYS)] == KEYS
    assert report["bench"] == "mcp" and report["scheme"] == "exact"
    for key in KEYS[1:]:
        value = report[key]
        assert isinstance(value, (int, float)) and value > 0, (key, value)
    price = report["price_atomic"]
    for side in ("ours", "x402_sdk"):
        assert report[f"{side}_calls"] == CALLS
        assert report[f"{side}_settled_atomic"] == CALLS * price
