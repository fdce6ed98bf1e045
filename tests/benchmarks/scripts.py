"""Running a benchmark script as a process and reading its report, the last stdout line.

Every script in ``benchmarks/`` ends with one JSON object on stdout; the
smoke tests run them with tiny sizes through :func:`run_script` (which keeps
the exit status for the test to judge), :func:`run_bench` (which requires
status 0) or :func:`run_fuzzer` (the fuzzers' shared checks).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests import zygote

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(script: str, *args: str, timeout_s: float = 300) -> tuple[int, dict[str, Any], str]:
    """The exit status, the report and stderr of ``benchmarks/<script> ARGS``."""
    proc = zygote.run_process(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]  # no line at all: the process died (a crash)
    report = json.loads(lines[-1])
    assert isinstance(report, dict)
    return proc.returncode, report, proc.stderr


def run_fuzzer(
    script: str,
    *args: str,
    bench: str,
    cases: int,
    clean: Sequence[str],
    reached: Mapping[str, Iterable[str]],
    timeout_s: float = 300,
) -> dict[str, Any]:
    """A fuzzer's run of ``cases`` that found nothing and reached every layer it must.

    The report names ``bench`` and counts ``cases``; each count in ``clean``
    is 0 (else stderr, with the offending cases, is shown); the exit status is
    0; and for each field of ``reached`` (``statuses``, ``reasons``, …) every
    key named was counted at least once.
    """
    code, report, stderr = run_script(script, "--cases", str(cases), *args, timeout_s=timeout_s)
    assert report["bench"] == bench and report["cases"] == cases, report
    found = {name: report[name] for name in clean}
    assert set(found.values()) == {0}, (found, stderr[-4000:])
    assert code == 0, stderr[-4000:]
    for name, keys in reached.items():
        counts = report[name]
        assert isinstance(counts, dict)
        missing = [key for key in keys if counts.get(key, 0) <= 0]
        assert not missing, (name, missing, counts)
    return report


def run_bench(script: str, *args: str, timeout_s: float = 300) -> dict[str, Any]:
    """The report of a run that must succeed."""
    code, report, stderr = run_script(script, *args, timeout_s=timeout_s)
    assert code == 0, stderr
    return report
