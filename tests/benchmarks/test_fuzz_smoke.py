"""The paywall fuzzer runs a few hundred cases against both targets and reports no 5xx, no unpaid content.

It runs ``benchmarks/fuzz_paywall.py`` as a real process (memory chain,
middleware as ASGI, reverse proxy in front of a real uvicorn upstream) with a
small case count and reads its one JSON line; speed is not checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_paywall.py"


def run_fuzz(*args: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    report = json.loads(lines[-1])
    assert isinstance(report, dict)
    return proc.returncode, report, proc.stderr


def test_fuzz_finds_no_5xx_and_no_unpaid_content() -> None:
    code, report, stderr = run_fuzz("--cases", "600", "--seed", "7")
    assert report["bench"] == "fuzz"
    assert report["cases"] == 600
    assert report["middleware_cases"] == report["proxy_cases"] == 300
    assert (report["status_5xx"], report["unpaid_content"], report["hangs"]) == (0, 0, 0), stderr[
        -4000:
    ]
    assert code == 0
    statuses = report["statuses"]
    assert isinstance(statuses, dict)
    # The cases reach every layer: refusals, challenges and free pages on both targets.
    for target in ("middleware", "proxy"):
        for status in (200, 400, 402):
            assert statuses.get(f"{target}:{status}", 0) > 0, (target, status, statuses)


def test_fuzz_replays_one_case() -> None:
    code, report, _ = run_fuzz("--only", "3", "--target", "middleware")
    assert code == 0
    assert report["cases"] == report["middleware_cases"] == 1
