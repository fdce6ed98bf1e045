"""The paywall fuzzer runs a few hundred cases against both targets and reports no 5xx, no unpaid content.

It runs ``benchmarks/fuzz_paywall.py`` as a real process (memory chain,
middleware as ASGI, reverse proxy in front of a real uvicorn upstream) with a
small case count and reads its one JSON line; speed is not checked here.
"""

from __future__ import annotations

from tests.benchmarks.scripts import run_fuzzer


def test_fuzz_finds_no_5xx_and_no_unpaid_content() -> None:
    # The cases reach every layer: refusals, challenges and free pages on both targets.
    targets = ("middleware", "proxy")
    statuses = [f"{target}:{status}" for target in targets for status in (200, 400, 402)]
    report = run_fuzzer(
        "fuzz_paywall.py", "--seed", "7", bench="fuzz", cases=600,
        clean=("status_5xx", "unpaid_content", "hangs"), reached={"statuses": statuses},
        timeout_s=240,
    )  # fmt: skip
    assert report["middleware_cases"] == report["proxy_cases"] == 300
