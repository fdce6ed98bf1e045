"""The paywall soak runs a few thousand mixed requests end to end and reports no 5xx and no valid sign-in refused.

It runs ``benchmarks/soak_paywall.py`` as a real process (anvil, the paywall
as its own uvicorn process on 127.0.0.1, payments, vouchers, sign-ins from
the payer and from strangers, malformed input) with short windows, and reads
its one JSON line. Speed and memory are reported, never asserted here.
"""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import run_script


@pytest.mark.anvil
def test_soak_smoke_has_no_5xx_and_refuses_no_valid_sign_in() -> None:
    code, report, _ = run_script(
        "soak_paywall.py",
        *("--requests", "2500", "--concurrency", "4", "--window-s", "5", "--seconds-max", "900"),
        timeout_s=1200,
    )
    assert report["bench"] == "soak_paywall"
    assert report["requests"] >= 2500
    assert report["status_5xx"] == 0 and report["valid_sign_ins_refused"] == 0, report
    assert report["strangers_let_in"] == 0 and report["vouchers_refused"] == 0, report
    assert report["unexpected"] == {}, report
    assert report["sign_ins_ok"] > 0 and report["stranger_sign_ins"] > 0
    assert report["vouchers_paid"] > 0
    for key in ("rss_growth_pct", "slowest_vs_first", "first_window_per_s"):
        assert key in report
    assert code == 0
