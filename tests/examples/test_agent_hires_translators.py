"""``examples/agent_hires_translators.py`` runs end to end as a user runs it, and its books add up.

The example runs as a subprocess (no FARTHING_* settings leak in): three
translation jobs priced in CNY, INR and JPY, held in escrow through the x402
auth-capture facilitator, delivered, reviewed and paid, on the in-process
memory chain with the scripted workers, on its own anvil, and with the real
vLLM serving the workers and the reviewer. Its ``--json`` summary is checked
in ints: each hold is exactly price × stored rate in USDC atomic units, what
each worker received on chain is what was captured for it and what the
agent booked, the agent's books match its wallet, and nothing is left
unreconciled.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

import pytest

from farthing.devchain.node import start_anvil
from tests import zygote
from tests.conftest import REPO, VllmProcess, anvil_missing_reason, clean_env

EXAMPLE = REPO / "examples" / "agent_hires_translators.py"
FUNDS = 25_000_000  # the example mints 25 USDC to the hiring agent
PRICES = {"Chinese": ("40 CNY", "0.1385"), "Hindi": ("500 INR", "0.0119"),
          "Japanese": ("800 JPY", "0.0067")}  # fmt: skip


def run_example(*args: str, timeout_s: float = 300) -> dict[str, Any]:
    done = zygote.run_process(
        [sys.executable, str(EXAMPLE), "--json", *args],
        check=False, capture_output=True, text=True, timeout=timeout_s, env=clean_env(),
        cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def check_books(summary: dict[str, Any]) -> None:
    """Both sides agree, to the atomic unit, and nothing is unreconciled."""
    jobs = summary["jobs"]
    assert [job["language"] for job in jobs] == list(PRICES)
    for job in jobs:
        price, rate = PRICES[job["language"]]
        whole, currency = price.split()
        assert (job["price"]["currency"], job["rate"]) == (currency, rate)
        assert int(job["price"]["amount"]) == int(whole) * 10 ** job["price"]["decimals"]
        assert int(job["amount"]) == int(Decimal(whole) * Decimal(rate) * 10**6)
        assert 0 <= int(job["captured"]) <= int(job["amount"])
    received = {w["address"]: int(w["received"]) for w in summary["workers"]}
    booked = {w["address"]: int(w["booked"]) for w in summary["workers"]}
    for job in jobs:
        assert received[job["worker"]] == int(job["captured"]) == booked[job["worker"]]
    agent, captured = summary["agent"], sum(int(job["captured"]) for job in jobs)
    held = sum(int(job["held"]) for job in jobs)
    assert (int(agent["funded"]), int(agent["spent"]), int(agent["reserved"])) == (
        FUNDS, captured, held,
    )  # fmt: skip
    assert int(agent["wallet"]) == int(agent["available"]) == FUNDS - captured - held
    assert int(summary["escrowHeld"]) == held
    assert summary["breaks"] == []


def test_the_scripted_workers_are_hired_and_paid_in_full() -> None:
    summary = run_example()
    assert (summary["route"], summary["workersKind"]) == ("facilitator", "scripted")
    assert [job["state"] for job in summary["jobs"]] == ["paid"] * 3
    assert [int(job["captured"]) for job in summary["jobs"]] == [5_540_000, 5_950_000, 5_360_000]
    assert all(job["verdict"] == "accept" for job in summary["jobs"])
    check_books(summary)


def test_the_operator_may_call_the_escrow_directly() -> None:
    summary = run_example("--direct")
    assert summary["route"] == "direct"
    assert [job["state"] for job in summary["jobs"]] == ["paid"] * 3
    check_books(summary)


@pytest.mark.anvil
def test_on_anvil() -> None:
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        rpc = node.chain()
        summary = run_example("--rpc-url", str(rpc.rpc_url))
        rpc.close()
    assert summary["network"] == "eip155:31337"
    assert [job["state"] for job in summary["jobs"]] == ["paid"] * 3
    check_books(summary)


def test_help_and_bad_options_answer_in_one_line() -> None:
    shown = zygote.run_process(
        [sys.executable, str(EXAMPLE), "--help"], check=False, capture_output=True, text=True,
        timeout=120,
        env=clean_env(), cwd=REPO,
    )  # fmt: skip
    assert shown.returncode == 0
    for option in ("--model-url", "--rpc-url", "--json", "--approve"):
        assert option in shown.stdout
    bad = zygote.run_process(
        [sys.executable, str(EXAMPLE), "--max-tokens", "0"], check=False, capture_output=True,
        text=True,
        timeout=120, env=clean_env(), cwd=REPO,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "token limits" in bad.stderr


@pytest.mark.vllm
def test_with_the_real_vllm(vllm: VllmProcess) -> None:
    # The tiny model's weights are random: nothing here reads what it decides,
    # only that every job is settled one way or another and the books agree.
    summary = run_example(
        "--model-url", vllm.base_url, "--model", vllm.model, "--max-tokens", "16",
        "--review-max-tokens", "400", "--approve", timeout_s=900,
    )  # fmt: skip
    assert summary["workersKind"] == "model"
    assert all(job["state"] in ("paid", "voided") for job in summary["jobs"]), summary["jobs"]
    check_books(summary)
