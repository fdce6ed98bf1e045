"""`farthing agent` works as real processes against `farthing chain dev` and a blog served over HTTP.

The site fixture starts the dev chain (anvil) as the real CLI does, writes the
agent's encrypted keystore, mints it 1 USDC, and serves the paywalled blog
with uvicorn. Each command then runs as `python -m farthing agent ...`: the
wallet deposit is booked on first use, the agent buys within its budget, the
policy set from the command line holds, and every refusal is one line on
stderr that never shows the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farthing.cli import main
from farthing.wallet.chain import Call
from farthing.wallet.token import Stablecoin
from tests.agents.conftest import PRICE_ATOMIC, Site
from tests.conftest import TEST_PASSPHRASE, free_port, run_farthing

pytestmark = pytest.mark.anvil

TASK = "How was the English farthing coin minted, in silver or copper, and why was it withdrawn?"


def test_agent_run_buys_within_budget_and_reports(site: Site) -> None:
    result = site.farthing(
        "agent", "run", "--task", TASK, "--budget", "0.03", "--url", f"{site.url}/", "--json"
    )
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["payments"] == 2
    assert report["spent_atomic"] == 2 * PRICE_ATOMIC <= report["budget_atomic"] == 30_000
    reasons = [item["reason"] for item in report["skipped_items"]]
    assert any("left of the budget" in r for r in reasons)
    assert any("not relevant" in r for r in reasons)
    assert all(item["transaction"].startswith("0x") for item in report["bought"])

    status = site.farthing("agent", "status", "--task-id", report["task_id"], "--json")
    assert status.code == 0, status.stderr
    state = status.json()
    assert state["funded_atomic"] == 1_000_000  # the mint, booked as the agent's funding
    assert state["spent_atomic"] == 2 * PRICE_ATOMIC
    assert state["task_spent_atomic"] == 2 * PRICE_ATOMIC
    assert state["balance_atomic"] == 1_000_000 - 2 * PRICE_ATOMIC
    assert state["possible_spend"] == 0

    # The dev chain minted to its own accounts at start: reconciliation looks
    # only at the agent's wallet, so those are not the agent's breaks.
    resolved = site.farthing("agent", "resolve", "--json")
    assert resolved.code == 0, resolved.stdout + resolved.stderr
    assert resolved.json()["reconciliation_breaks"] == 0 and resolved.json()["ledger_balanced"]
    assert resolved.json()["payments_checked"] == 3  # the deposit and two payments

    human = site.farthing(
        "agent", "run", "--task", TASK, "--budget", "0.02", "--url", f"{site.url}/"
    )
    assert human.code == 0, human.stderr
    assert "deterministic rule brain" in human.stdout
    assert "Spent 0.01385 USDC of the 0.02 USDC budget" in human.stdout
    # The progress line names the wallet and the agent id once ("agent agent paying" was a stutter).
    assert "paying from 0x" in human.stdout + human.stderr
    assert "agent agent" not in human.stdout + human.stderr
    assert site.agent.private_key.get_secret_value()[2:] not in human.stdout + human.stderr


def test_policy_set_from_the_command_line_holds(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = cli_flags(site, tmp_path)
    data = ["--data-dir", str(site.data_dir)]

    def json_of(args: list[str]) -> dict[str, object]:
        assert main(args) == 0
        value: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return value

    cap = json_of(
        [
            "agent",
            "policy",
            "set",
            "--payment-cap",
            "0.01",
            "--deny-host",
            "evil.test",
            "--json",
            *data,
        ]
    )
    assert cap["payment_cap_atomic"] == 10_000 and cap["hosts_denied"] == ["evil.test"]
    assert main(["agent", "policy", "show", *data]) == 0
    shown = capsys.readouterr().out
    assert "0.01 USDC" in shown and "evil.test" in shown

    article = f"{site.url}/posts/quarter-penny"
    assert main(["agent", "fetch", article, "--max-price", "0.02", *flags]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: did not pay") and "exceeds_payment_cap" in line

    cleared = json_of(["agent", "policy", "set", "--payment-cap", "none", "--json", *data])
    assert cleared["payment_cap_atomic"] is None and cleared["hosts_denied"] == ["evil.test"]
    assert main(["agent", "fetch", article, "--max-price", "0.02", *flags]) == 0
    assert "960 of them a pound" in capsys.readouterr().out


def cli_flags(site: Site, tmp_path: Path) -> list[str]:
    """Flags that stand in for the environment a real process would read."""
    secret = tmp_path / "passphrase"
    secret.write_text(TEST_PASSPHRASE + "\n")
    secret.chmod(0o600)  # a passphrase file others can read is refused
    return ["--data-dir", str(site.data_dir), "--passphrase-file", str(secret)]


BAD_SELLERS = [
    ("/bad/unknown-network", "1", "unsupported_network"),
    ("/bad/unknown-asset", "1", "unsupported_asset"),
    ("/bad/malformed", "1", "malformed_payment_required"),
    ("/posts/quarter-penny", "0.01", "price_above_max"),
]


def test_bad_sellers_are_one_line_refusals(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process, through the console script's own entry point: fast.
    flags = cli_flags(site, tmp_path)
    unreachable = (f"http://127.0.0.1:{free_port()}/x", "1", "host_unreachable")
    for path, max_price, reason in [*BAD_SELLERS, unreachable]:
        url = path if path.startswith("http") else f"{site.url}{path}"
        assert main(["agent", "fetch", url, "--max-price", max_price, *flags]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: ") and reason in line, line
    assert main(["agent", "status", "--json", *flags]) == 0
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (status["reserved_atomic"], status["spent_atomic"]) == (0, 0)  # nothing dangling

    # The wallet is emptied behind the agent's back: the books still allow the
    # purchase, the chain does not, and the reservation is voided.
    gas = site.chain.send(Call(to=site.agent.address, data=b"", value=10**17), sender=site.minter)
    assert gas.ok
    assert (
        Stablecoin(site.chain, site.asset)
        .transfer(site.minter.address, 995_000, sender=site.agent)
        .ok
    )
    assert (
        main(["agent", "fetch", f"{site.url}/posts/quarter-penny", "--max-price", "1", *flags]) == 1
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "insufficient_balance" in line and "the wallet holds 0.005 USDC" in line, line
    assert main(["agent", "status", "--json", *flags]) == 0
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (status["reserved_atomic"], status["spent_atomic"]) == (0, 0)


def test_status_and_price_need_only_the_wallets_address(site: Site) -> None:
    # No passphrase anywhere: status and price read the keystore's clear address.
    env = {k: v for k, v in site.env.items() if k != "FARTHING_WALLET_PASSPHRASE"}
    status = run_farthing(["agent", "status", "--wallet", "default", "--json"], env=env)
    assert status.code == 0, status.stderr
    assert status.json()["balance_atomic"] == 1_000_000
    assert status.json()["funded_atomic"] == 1_000_000  # the deposit, booked without the key
    price = run_farthing(
        ["agent", "price", f"{site.url}/posts/quarter-penny", "--wallet", "default", "--json"],
        env=env,
    )
    assert price.code == 0, price.stderr
    missing = run_farthing(["agent", "status", "--wallet", "nobody"], env=env)
    assert missing.code == 1 and missing.stderr.count("\n") == 1
    assert "farthing wallet new" in missing.stderr


def test_a_seller_that_fails_after_payment_is_reported_once(site: Site) -> None:
    # The seller takes the signed payment and answers 500: the money may have
    # moved, and the one line says so once, with what the agent does next.
    fetched = site.farthing("agent", "fetch", f"{site.url}/bad/fails-after-pay", "--max-price", "1")
    assert fetched.code == 1, fetched.stdout + fetched.stderr
    said = fetched.stdout + fetched.stderr
    assert said.count("may have been spent") == 1, said
    (line,) = fetched.stderr.strip().splitlines()
    assert "stays reserved until resolved" in line and "500" in line, line
    status = site.farthing("agent", "status", "--json")
    assert status.code == 0, status.stderr
    assert status.json()["possible_spend"] == 1
