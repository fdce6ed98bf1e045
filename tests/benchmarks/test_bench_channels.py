"""benchmarks/bench_channels.py runs end to end on anvil with tiny counts and ends with its one JSON line.

A real run of the script as a process (its own anvil, our server and the x402
SDK's batch-settlement server each under uvicorn): the line carries every key
the issue names, rates are positive, and a whole channel's life (one deposit,
the vouchers, one claim, one settle) is three transactions on chain. Speed is
not checked here; the script itself is the measurement.
"""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import run_bench

pytestmark = pytest.mark.anvil

KEYS = [
    "bench",
    "unpaid_per_s",
    "exact_per_s",
    "channel_per_s",
    "x402_sdk_channel_per_s",
    "ratio_vs_exact",
    "ratio_vs_unpaid",
    "ratio_vs_x402_sdk",
    "onchain_tx_per_10k",
]


def test_bench_channels_prints_its_json_line() -> None:
    report = run_bench(
        "bench_channels.py",
        *("--exact", "4", "--channel", "8", "--concurrency", "2"),
        *("--seconds", "0.3", "--onchain-requests", "5"),
    )
    assert list(report)[: len(KEYS)] == KEYS
    assert report["bench"] == "channels"
    for key in KEYS[1:-1]:
        value = report[key]
        assert isinstance(value, (int, float)) and value > 0, (key, value)
    assert report["onchain_tx_per_10k"] == 3  # deposit, claim, settle
    assert report["onchain_requests"] == 5
