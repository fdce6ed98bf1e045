"""The facilitator fuzzer runs a few hundred cases and reports no 5xx, no money moved against the rules, no hangs, and it sees money moved by anyone.

It runs ``benchmarks/fuzz_facilitator.py`` as a real process (memory chain,
``HostGuard`` around ``facilitator_app`` with an API key, driven as ASGI) with
a small case count and reads its one JSON line. The cases must reach every
layer (the host guard, the key, the content type, the JSON bounds, payment
refusals), must include each channel path (deposit, voucher, claim, settle,
refund) both as built and mutated, and must include settlements that really
moved money, so the money rule was exercised; speed is not checked. Then the
fuzzer runs in this process against a sabotaged facilitator that mints to the
griefer from an account that is not the relayer on every ``/verify``: the
fuzzer reads the books whenever a block was mined, so it must report each of
those cases, and only those.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest

from tests.benchmarks.scripts import BENCHMARKS, run_fuzzer

SCRIPT = BENCHMARKS / "fuzz_facilitator.py"
CHANNEL_KINDS = ("deposit", "voucher", "claim", "sweep", "refund")


def test_fuzz_finds_no_5xx_no_unallowed_money_and_no_hang() -> None:
    kinds = [f"channel_{kind}{form}" for kind in CHANNEL_KINDS for form in ("", "~")]
    report = run_fuzzer(
        "fuzz_facilitator.py", "--seed", "11", bench="fuzz_facilitator", cases=250,
        clean=("status_5xx", "money_moved_unallowed", "hangs", "books_disagree"),
        reached={
            "statuses": ("200", "400", "401", "415", "421"),
            "reasons": ("payee_not_allowed", "asset_not_supported", "unauthorized"),
            "cases_by_kind": kinds,
        },
        timeout_s=900,
    )  # fmt: skip
    assert sum(report["moved_by_kind"].values()) > 0, report


def _load_fuzzer(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("fuzz_facilitator_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_fuzz_reports_money_a_sabotaged_facilitator_moved_without_the_relayer(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fuzz = _load_fuzzer(monkeypatch)
    minted: list[int] = []

    def sabotaged_world() -> Any:
        world = fuzz.build_world()
        honest: Callable[..., Awaitable[None]] = world.app
        owner = world.chain.dev_accounts()[0].signer()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await honest(scope, receive, send)
            if scope["path"] == "/verify":
                assert world.token.mint(world.griefer.address, 1, sender=owner).ok
                minted.append(1)

        world.app = app
        return world

    status = fuzz.main(
        ["--cases", "40", "--seed", "11", "--show", "0"], world_factory=sabotaged_world
    )
    report = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert status == 1
    # Each case that minted is the one reported, not a later settlement.
    assert minted and report["money_moved_unallowed"] == len(minted), (len(minted), report)
    assert (report["status_5xx"], report["hangs"], report["books_disagree"]) == (0, 0, 0)
