"""The jobs fuzzer runs a few hundred cases and reports no 5xx, no crash and no unauthorized state change.

It runs ``benchmarks/fuzz_jobs.py`` as a real process (the jobs app as
``farthing jobs serve`` builds it, over a real JobService on the memory chain
and SQLite, driven as ASGI) with a small case count and reads its one JSON
line; speed is not checked here.
"""

from __future__ import annotations

from tests.benchmarks.scripts import run_fuzzer


def test_fuzz_jobs_finds_no_5xx_no_crash_and_no_unauthorized_change() -> None:
    # The cases reach every layer: the host guard, sign-in, refusals and successes.
    report = run_fuzzer(
        "fuzz_jobs.py", "--seed", "11", bench="fuzz_jobs", cases=400,
        clean=("status_5xx", "crashes", "unauthorized_state_changes"),
        reached={"statuses": ("200", "400", "401", "403", "404", "405", "421", "422")},
        timeout_s=600,
    )  # fmt: skip
    assert report["recursion_limit"] == 1000
