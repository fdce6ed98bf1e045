"""`farthing ledger` commands answer --help, report, export and verify real books, and fail in one line.

Commands run through Typer's CliRunner on the ledger app against a real
SQLite file filled through the repository; failures must be ``LedgerError``
or ``CliError`` (which the root command prints as one line), never a crash.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from farthing.console import CliError
from farthing.ledger import (
    LedgerDatabase,
    LedgerDatabaseUnavailable,
    LedgerSchemaError,
    LedgerSettings,
    NewTransfer,
    PaymentDetails,
    register_asset,
    upgrade_database,
)
from farthing.ledger.cli.commands import app
from tests import zygote

COMMANDS = ["migrate", "report", "export", "verify", "expire", "reconcile"]
MERCHANT = "0x" + "bb" * 20


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200"})


@pytest.fixture
def filled(tmp_path, make_books) -> str:
    url = f"sqlite:///{tmp_path}/books.sqlite"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    books = make_books(database, budget=5_000_000)
    with database.write() as session:
        register_asset(
            session=session,
            asset_id="eip155:8453/erc20:" + "0x" + "cc" * 20,
            ledger=1,
            decimals=6,
            symbol="USDC",
        )
    details = PaymentDetails(payee_address=MERCHANT, resource="/api/weather", task_id="t-1")
    reserve = books.reserve(1_250_000, payment=details)
    post = NewTransfer.post(id=books.new_id(), pending_id=reserve.id)
    assert books.transfer(reserve, post, books.reserve(10_000)) == ["ok", "ok", "ok"]
    database.dispose()
    return url


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(runner: CliRunner, command: str | None) -> None:
    result = runner.invoke(app, [*([command] if command else []), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if command and command != "migrate":
        assert "--database-url" in result.output


def test_help_through_the_root_command(capsys) -> None:
    from farthing import cli

    for command in COMMANDS:
        assert cli.main(["ledger", command, "--help"]) == 0
    assert "verify" in capsys.readouterr().out


def test_migrate_creates_a_database(runner: CliRunner, tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/new.sqlite"
    result = runner.invoke(app, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "schema 0002" in result.output  # the newest migration: the dashboard's indexes


def test_report_tables_and_json(runner: CliRunner, filled: str) -> None:
    result = runner.invoke(app, ["report", "--database-url", filled, "--merchant", MERCHANT])
    assert result.exit_code == 0, result.output
    for title in (
        "Spend by agent",
        "Spend by payee",
        "Spend by resource",
        "Spend by day",
        "Budgets",
        "Revenue",
    ):
        assert title in result.output
    assert "1.25 USDC" in result.output and "/api/weather" in result.output
    result = runner.invoke(
        app, ["report", "--database-url", filled, "--json", "--by", "agent", "--merchant", MERCHANT]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    (agent,) = data["spend"]["agent"]
    assert (agent["key"], agent["posted"], agent["reserved"], agent["payment_count"]) == (
        "agent-1",
        "1250000",
        "10000",
        2,
    )
    assert data["budgets"][0]["remaining"] == str(5_000_000 - 1_250_000 - 10_000)
    assert data["revenue"] == [
        {
            "payee_address": MERCHANT,
            "resource": "/api/weather",
            "ledger": "1",
            "posted": "1250000",
            "payment_count": 1,
        }
    ]


def test_export_csv_and_json(runner: CliRunner, filled: str) -> None:
    result = runner.invoke(app, ["export", "--database-url", filled, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["kind"] for r in rows] == ["created", "pending", "posted", "pending"]
    assert rows[2]["amount"] == "1250000" and rows[2]["resource"] == "/api/weather"
    result = runner.invoke(app, ["export", "--database-url", filled, "--format", "json"])
    data = json.loads(result.output)
    assert [r["kind"] for r in data] == ["created", "pending", "posted", "pending"]
    assert all(isinstance(r["amount"], str) for r in data)


def test_verify_clean_then_tampered(runner: CliRunner, filled: str) -> None:
    result = runner.invoke(app, ["verify", "--database-url", filled])
    assert result.exit_code == 0 and result.output.startswith("ok:"), result.output
    result = runner.invoke(app, ["verify", "--database-url", filled, "--json"])
    assert json.loads(result.output)["ok"] is True
    database = LedgerDatabase(LedgerSettings(database_url=filled))
    with database.write() as session:
        session.execute(text("DROP TRIGGER ledger_audit_entry_no_update"))
        session.execute(text("UPDATE ledger_audit_entry SET subject = 'x' WHERE sequence = 4"))
    database.dispose()
    result = runner.invoke(app, ["verify", "--database-url", filled])
    assert isinstance(result.exception, CliError)
    assert "entry_altered at entry 4" in str(result.exception)
    result = runner.invoke(app, ["verify", "--database-url", filled, "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["problems"][0]["sequence"] == 4


def test_expire_command(runner: CliRunner, filled: str) -> None:
    result = runner.invoke(app, ["expire", "--database-url", filled, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"expired": 0}


def test_missing_and_unreachable_databases_are_ledger_errors(runner: CliRunner, tmp_path) -> None:
    result = runner.invoke(app, ["report", "--database-url", f"sqlite:///{tmp_path}/nope.sqlite"])
    assert isinstance(result.exception, LedgerDatabaseUnavailable)
    assert not (tmp_path / "nope.sqlite").exists()
    result = runner.invoke(app, ["verify", "--database-url", "postgresql://x@127.0.0.1:1/db"])
    assert isinstance(result.exception, LedgerDatabaseUnavailable)
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    result = runner.invoke(app, ["export", "--database-url", f"sqlite:///{empty}"])
    assert isinstance(result.exception, LedgerSchemaError)


def test_bad_day_is_a_one_line_error(runner: CliRunner, filled: str) -> None:
    result = runner.invoke(app, ["report", "--database-url", filled, "--since", "yesterday"])
    assert isinstance(result.exception, CliError) and "--since" in str(result.exception)


def _farthing(*args: str, env_dir: str) -> subprocess.CompletedProcess[str]:
    # Run as a user types it: the console script's module in a fresh process,
    # output piped (not a terminal), no COLUMNS set.
    return zygote.run_process(
        [sys.executable, "-m", "farthing", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "FARTHING_DATA_DIR": env_dir},
        timeout=120,
        check=False,
    )


def test_report_of_a_tampered_ledger_exits_1_and_says_so_in_json(filled: str, tmp_path) -> None:
    database = LedgerDatabase(LedgerSettings(database_url=filled))
    with database.write() as session:
        session.execute(text("DROP TRIGGER ledger_audit_entry_no_update"))
        session.execute(text("UPDATE ledger_audit_entry SET subject = 'x' WHERE sequence = 4"))
    database.dispose()
    done = _farthing("ledger", "report", "--database-url", filled, "--json", env_dir=str(tmp_path))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["audit"]["ok"] is False and report["audit"]["problems"] >= 1
    assert "entry_altered" in report["audit"]["first_problem"]
    done = _farthing("ledger", "report", "--database-url", filled, env_dir=str(tmp_path))
    assert done.returncode == 1
    assert "Audit problems" in done.stdout
    assert done.stderr.count("\n") == 1 and "cannot be trusted" in done.stderr


def test_piped_tables_print_identifiers_whole_and_say_which_books(filled: str, tmp_path) -> None:
    done = _farthing(
        "ledger", "report", "--database-url", filled, "--merchant", MERCHANT, env_dir=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert MERCHANT in done.stdout
    assert "…" not in done.stdout
    assert "books: sqlite:///" in done.stdout
    clean = _farthing("ledger", "report", "--database-url", filled, "--json", env_dir=str(tmp_path))
    assert json.loads(clean.stdout)["audit"] == {"ok": True, "problems": 0, "first_problem": None}


def test_migrate_and_export_take_json_and_data_dir(tmp_path) -> None:
    done = _farthing(
        "ledger", "migrate", "--data-dir", str(tmp_path / "d"), "--json", env_dir=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["database"].endswith("/d/ledger.sqlite") and answer["schema"]
    done = _farthing(
        "ledger", "export", "--data-dir", str(tmp_path / "d"), "--json", env_dir=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and json.loads(done.stdout) == []


@pytest.mark.anvil
def test_reconcile_reads_the_ledger_of_its_data_dir(dev_chain, tmp_path) -> None:
    # FARTHING_DATA_DIR points elsewhere: --data-dir alone names the books and the chain.
    data_dir = str(dev_chain.data_dir)
    assert (
        _farthing("ledger", "migrate", "--data-dir", data_dir, env_dir=str(tmp_path)).returncode
        == 0
    )
    done = _farthing("ledger", "reconcile", "--data-dir", data_dir, "--json", env_dir=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agree"] is True
