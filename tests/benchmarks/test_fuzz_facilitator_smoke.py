"""The facilitator fuzzer runs a few hundred cases and reports no 5xx, no money moved against the rules, no hangs.

It runs ``benchmarks/fuzz_facilitator.py`` as a real process (memory chain,
``HostGuard`` around ``facilitator_app`` with an API key, driven as ASGI) with
a small case count and reads its one JSON line. The cases must reach every
layer (the host guard, the key, the content type, the JSON bounds, payment
refusals) and must include settlements that really moved money, so the money
rule was exercised; speed is not checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_facilitator.py"


def test_fuzz_finds_no_5xx_no_unallowed_money_and_no_hang() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", "250", "--seed", "11"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["bench"] == "fuzz_facilitator" and report["cases"] == 250
    counts = (report["status_5xx"], report["money_moved_unallowed"], report["hangs"])
    assert counts == (0, 0, 0), proc.stderr[-4000:]
    assert proc.returncode == 0
    for status in ("200", "400", "401", "415", "421"):
        assert report["statuses"].get(status, 0) > 0, (status, report["statuses"])
    for reason in ("payee_not_allowed", "asset_not_supported", "unauthorized"):
        assert report["reasons"].get(reason, 0) > 0, (reason, report["reasons"])
    assert sum(report["moved_by_kind"].values()) > 0, report
