"""Each fuzzer replays one case by its index (``--only``) and reports just that case.

It runs each script in ``benchmarks/`` as a real process with ``--only`` and
reads its one JSON line: one case, no failure, exit status 0. The case loop
is the shared harness's (``benchmarks/fuzzing.py``), so one test per fuzzer
checks that each wires it the same way.
"""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import run_script

REPLAYS = [
    ("fuzz_paywall.py", ("--only", "3", "--target", "middleware"), {"middleware_cases": 1}),
    ("fuzz_facilitator.py", ("--only", "7"), {"start": 7}),
    ("fuzz_jobs.py", ("--only", "5"), {"first_case": 5}),
    ("fuzz_dashboard.py", ("--only", "47"), {}),
]


@pytest.mark.parametrize(("script", "args", "expected"), REPLAYS, ids=[r[0] for r in REPLAYS])
def test_a_fuzzer_replays_one_case(
    script: str, args: tuple[str, ...], expected: dict[str, object]
) -> None:
    code, report, stderr = run_script(script, *args)
    assert code == 0, stderr[-3000:]
    assert report["cases"] == 1
    for key, value in expected.items():
        assert report[key] == value, (key, report)
