"""The dashboard fuzzer runs a few hundred cases and finds no 5xx, no crash, no unauthorized change.

It runs ``benchmarks/fuzz_dashboard.py`` as a real process (the real app on
real SQLite books, driven as ASGI, in both login and loopback modes) with a
small case count and reads its one JSON line; speed is not checked here.
"""

from __future__ import annotations

from tests.benchmarks.scripts import run_fuzzer


def test_fuzz_finds_no_5xx_no_crash_and_no_unauthorized_change() -> None:
    # The cases reach every layer of both targets: pages, host refusals, CSRF refusals.
    statuses = [f"{target}:{status}" for target in ("login", "local") for status in (200, 403, 421)]
    report = run_fuzzer(
        "fuzz_dashboard.py", "--seed", "3", bench="fuzz_dashboard", cases=400,
        clean=("status_5xx", "crashes", "hangs", "unauthorized_state_changes"),
        reached={"statuses": statuses},
    )  # fmt: skip
    # And some carry a valid session and token, so the oracle sees allowed changes too.
    authorized = report["authorized_state_changes"]
    assert isinstance(authorized, int) and authorized > 0
