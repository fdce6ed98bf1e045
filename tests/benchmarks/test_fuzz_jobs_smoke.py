"""The jobs fuzzer runs a few hundred cases and reports no 5xx, no crash and no unauthorized state change.

It runs ``benchmarks/fuzz_jobs.py`` as a real process (the jobs app as
``farthing jobs serve`` builds it, over a real JobService on the memory chain
and SQLite, driven as ASGI) with a small case count and reads its one JSON
line; speed is not checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_jobs.py"


def run_fuzz(*args: str) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]  # no line at all: the process died (a crash)
    report = json.loads(lines[-1])
    assert isinstance(report, dict)
    return proc.returncode, report, proc.stderr


def test_fuzz_jobs_finds_no_5xx_no_crash_and_no_unauthorized_change() -> None:
    code, report, stderr = run_fuzz("--cases", "400", "--seed", "11")
    assert report["bench"] == "fuzz_jobs" and report["cases"] == 400
    failures = (report["status_5xx"], report["crashes"], report["unauthorized_state_changes"])
    assert failures == (0, 0, 0), stderr[-4000:]
    assert code == 0
    assert report["recursion_limit"] == 1000
    statuses = report["statuses"]
    assert isinstance(statuses, dict)
    # The cases reach every layer: the host guard, sign-in, refusals and successes.
    for status in ("200", "400", "401", "403", "404", "405", "421", "422"):
        assert statuses.get(status, 0) > 0, (status, statuses)


def test_fuzz_jobs_replays_one_case() -> None:
    code, report, _ = run_fuzz("--only", "5")
    assert code == 0
    assert report["cases"] == 1
