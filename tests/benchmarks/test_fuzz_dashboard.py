"""The dashboard fuzzer runs a few hundred cases and finds no 5xx, no crash, no unauthorized change.

It runs ``benchmarks/fuzz_dashboard.py`` as a real process (the real app on
real SQLite books, driven as ASGI, in both login and loopback modes) with a
small case count and reads its one JSON line; speed is not checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_dashboard.py"


def run_fuzz(*args: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    report = json.loads(lines[-1])
    assert isinstance(report, dict)
    return proc.returncode, report, proc.stderr


def test_fuzz_finds_no_5xx_no_crash_and_no_unauthorized_change() -> None:
    code, report, stderr = run_fuzz("--cases", "400", "--seed", "3")
    assert report["bench"] == "fuzz_dashboard" and report["cases"] == 400
    found = (report["status_5xx"], report["crashes"], report["hangs"],
             report["unauthorized_state_changes"])  # fmt: skip
    assert found == (0, 0, 0, 0), stderr[-4000:]
    assert code == 0
    statuses = report["statuses"]
    assert isinstance(statuses, dict)
    # The cases reach every layer of both targets: pages, host refusals, CSRF refusals.
    for target in ("login", "local"):
        for status in (200, 403, 421):
            assert statuses.get(f"{target}:{status}", 0) > 0, (target, status, statuses)
    # And some carry a valid session and token, so the oracle sees allowed changes too.
    authorized = report["authorized_state_changes"]
    assert isinstance(authorized, int) and authorized > 0


def test_fuzz_replays_one_case() -> None:
    code, report, _ = run_fuzz("--only", "47")
    assert code == 0 and report["cases"] == 1
