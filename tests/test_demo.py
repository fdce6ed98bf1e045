"""`farthing demo` runs on embedded defaults (memory chain) and its JSON line adds up."""

from __future__ import annotations

import json

import pytest

from farthing.cli import main


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(line)
    assert report["chain"] == "memory"
    assert report["payments"] == 3
    assert report["refused"] == ["authorization_used_or_canceled"]
    assert report["spent_atomic"] == report["merchant_received_atomic"] == 400_000
    assert report["spent_atomic"] <= report["budget_atomic"]


def test_demo_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "settled 3 of 4" in out
    assert "refused: authorization_used_or_canceled" in out
