"""`farthing demo` runs an agent that pays a paywalled blog on embedded defaults, and its books reconcile.

The in-process tests call the real command (`farthing.cli.main`) on the memory
chain and read its output; the subprocess test runs `python -m farthing demo
--json` as a real process, and the anvil tests point `--chain-url` at a
throwaway anvil. The command it prints to open the dashboard is run as
printed and shows the merchant's books. With `--scheme batch-settlement` the same purchases take one
deposit, a voucher each, then one claim and one settle: three transactions,
read from the chain by the command itself, against one transfer per article.
With `--mcp` the whole loop runs over MCP as a process: the agent finds the
blog's fetch tool in the facilitator's catalog (after a first reader's sale
there), pays two articles, and its wallet moved exactly their price on chain.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from farthing.cli import main
from farthing.devchain.node import AnvilNode
from tests.conftest import cli_env, run_farthing
from tests.dashboard.conftest import dashboard

FIELDS = [
    "payments",
    "skipped",
    "spent_atomic",
    "budget_atomic",
    "ledger_balanced",
    "reconciliation_breaks",
    "chain",
    "scheme",
    "onchain_tx",
]


def check_report(report: dict[str, object], chain: str, scheme: str = "exact") -> None:
    assert list(report) == FIELDS
    assert report["chain"] == chain
    assert report["scheme"] == scheme
    # exact: one transfer per article; a channel: one deposit, one claim, one settle.
    assert report["onchain_tx"] == (2 if scheme == "exact" else 3)
    # The budget (0.03 USDC) covers two 0.01385 USDC articles of the three on the subject.
    assert report["payments"] == 2
    assert report["skipped"] == 4
    assert report["spent_atomic"] == 2 * 13_850
    assert report["budget_atomic"] == 30_000
    assert report["ledger_balanced"] is True
    assert report["reconciliation_breaks"] == 0


def test_demo_json_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    check_report(json.loads(lines[0]), "memory")


def test_demo_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "deterministic rule brain" in out  # it says plainly there is no model
    assert "Purchases" in out and "Skipped" in out
    assert "more than the 0.0023 USDC left of the budget" in out
    assert "not relevant to the task" in out
    assert "Spent 0.0277 USDC of the 0.03 USDC budget" in out
    assert "0 break(s)" in out and "balanced, audit log verified" in out
    assert "Merchant revenue in its own books: 0.0277 USDC from 2 payment(s)" in out


def test_demo_through_a_channel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--scheme", "batch-settlement"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    check_report(json.loads(lines[0]), "memory", "batch-settlement")


def test_demo_through_a_channel_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scheme", "batch-settlement"]) == 0
    out = capsys.readouterr().out
    assert "paid by batch-settlement" in out
    assert "claimed and settled 0.0277 USDC in 2 transaction(s)" in out
    assert "Merchant earned 0.0277 USDC through the channel (2 voucher(s))" in out
    assert "On-chain transactions for the purchases and their settlement: 3." in out
    assert "0 break(s)" in out and "balanced, audit log verified" in out


def test_demo_bad_scheme_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scheme", "upto"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --scheme")


def test_demo_bad_budget_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--budget", "0.0000001"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --budget:")


def test_demo_as_a_process(tmp_path: Path) -> None:
    result = run_farthing(["demo", "--json"], env=cli_env(tmp_path))
    assert result.code == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    check_report(result.json(), "memory")


def test_demo_over_mcp_as_a_process(tmp_path: Path) -> None:
    result = run_farthing(["demo", "--mcp", "--json"], env=cli_env(tmp_path))
    assert result.code == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    report = result.json()
    assert report["transport"] == "mcp"
    check_report({k: report[k] for k in FIELDS}, "memory")
    # Found in the catalog: the blog's MCP endpoint and its tool, as the bazaar keys a tool.
    assert report["server"] == "http://blog.farthing.test/mcp" and report["tool"] == "fetch"
    assert report["listings"] == 1
    # The chain moved exactly the price of what was bought, from the agent's wallet.
    assert report["agent_paid_onchain_atomic"] == report["spent_atomic"] == 2 * 13_850


def test_demo_over_mcp_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--mcp"]) == 0
    out = capsys.readouterr().out
    assert "a first reader bought /posts/sourdough over MCP" in out
    assert "the catalog lists 1 offer(s) for 'farthing blog'" in out
    assert "read the index through fetch (free): 6 article(s)" in out
    assert "Spent 0.0277 USDC of the 0.03 USDC budget" in out
    assert "the agent's wallet paid 0.0277 USDC on chain" in out
    assert "0.04155 USDC from 3 payment(s), the first reader's among them" in out
    assert "0 break(s)" in out and "balanced, audit log verified" in out


def test_demo_over_mcp_takes_exact_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--mcp", "--scheme", "batch-settlement"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --mcp")


@pytest.mark.anvil
def test_demo_on_anvil(anvil: AnvilNode, tmp_path: Path) -> None:
    result = run_farthing(["demo", "--json", "--chain-url", anvil.rpc_url], env=cli_env(tmp_path))
    assert result.code == 0, result.stderr
    check_report(result.json(), "anvil")


@pytest.mark.anvil
def test_demo_through_a_channel_on_anvil(anvil: AnvilNode, tmp_path: Path) -> None:
    result = run_farthing(
        ["demo", "--json", "--scheme", "batch-settlement", "--chain-url", anvil.rpc_url],
        env=cli_env(tmp_path),
    )
    assert result.code == 0, result.stderr
    check_report(result.json(), "anvil", "batch-settlement")


def test_the_dashboard_command_it_prints_shows_the_merchants_books(tmp_path: Path) -> None:
    """Run `farthing demo`, then the `farthing dashboard ...` it prints, as a user would."""
    env = cli_env(tmp_path)
    result = run_farthing(["demo"], env=env)
    assert result.code == 0, result.stderr
    (hint,) = [line for line in result.stdout.splitlines() if "farthing dashboard" in line]
    args = shlex.split(hint.split("farthing dashboard", 1)[1])
    with dashboard(args, env) as (http, ready):
        assert ready["merchant_database"] is not None
        overview = http.get("/").text
        revenue = http.get("/export/revenue.json").json()["rows"]
    merchant = overview.split('id="table-revenue"', 1)[1].split("</section>", 1)[0]
    assert "Nothing yet" not in merchant and "0.01385 USDC" in merchant
    # Two articles at 0.01385 USDC, booked in the merchant's own ledger.
    assert sum(int(row["revenue_atomic"]) for row in revenue) == 27_700
