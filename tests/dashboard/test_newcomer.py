"""What a newcomer meets in `farthing dashboard`, run as a real process on real books.

Books are written in a data directory's ``ledger.sqlite`` (a budget with no
daily limit, one settled and one open payment, a registered USDC), then
``farthing dashboard --data-dir DIR --port 0 --json`` starts as a user types
it: it prints one JSON line once it listens and finds the ledger as
``farthing ledger report`` does. Over HTTP on 127.0.0.1 it proves that
``/agents`` is not a dead end, that no daily limit reads as none (not "of 0
USDC"), that ``valid_before`` is a UTC time and that every transfer id (agent
page, exports, audit page) is 32 lower-case hex digits.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farthing.ledger import (
    LedgerDatabase,
    LedgerSettings,
    NewTransfer,
    PaymentDetails,
    format_transfer_id,
    register_asset,
    upgrade_database,
)
from tests.conftest import cli_env, run_farthing
from tests.dashboard.conftest import dashboard
from tests.ledger.conftest import LEDGER, open_books

PAYEE_ADDRESS = "0x" + "22" * 20


def write_books(data_dir: Path) -> dict[str, int]:
    """A settled payment of 0.0277 USDC and an open one; returns their ids and the window."""
    database = LedgerDatabase(LedgerSettings(data_dir=data_dir))
    upgrade_database(database)
    try:
        books = open_books(database, budget=5_000_000)
        with database.write() as session:
            register_asset(session=session, asset_id="eip155:8453/erc20:0x" + "cc" * 20,
                           ledger=LEDGER, decimals=6, symbol="USDC")  # fmt: skip
        valid_before = int(time.time()) + 3_600
        details = PaymentDetails(payee_address=PAYEE_ADDRESS, resource="https://blog.example/a",
                                 valid_before=valid_before)  # fmt: skip
        settled = books.reserve(27_700, payment=details)
        post = NewTransfer.post(id=books.new_id(), pending_id=settled.id)
        waiting = books.reserve(13_850, payment=details)
        assert books.transfer(settled, post, waiting) == ["ok", "ok", "ok"]
        return {"settled": settled.id, "waiting": waiting.id, "valid_before": valid_before}
    finally:
        database.dispose()


def utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def test_the_dashboard_finds_the_data_dirs_ledger_and_says_ready_in_json(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ids = write_books(data_dir)
    with dashboard(["--data-dir", str(data_dir)], cli_env(tmp_path / "env")) as (http, ready):
        assert ready["url"].startswith("http://127.0.0.1:")
        assert ready["database"] == f"sqlite:///{data_dir / 'ledger.sqlite'}"
        page = http.get("/agents/agent-1")
        assert page.status_code == 200
        assert format_transfer_id(ids["waiting"]) in page.text
    # FARTHING_DATA_DIR is the default, as for `farthing ledger report`.
    with dashboard([], cli_env(data_dir)) as (http, ready):
        assert ready["database"] == f"sqlite:///{data_dir / 'ledger.sqlite'}"
        assert http.get("/healthz").status_code == 200


def test_a_data_dir_without_books_is_one_line(tmp_path: Path) -> None:
    done = run_farthing(["dashboard", "--data-dir", str(tmp_path / "empty"), "--json"],
                        env=cli_env(tmp_path))  # fmt: skip
    assert done.code == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "ledger" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, int]]]:
    data_dir = tmp_path / "data"
    ids = write_books(data_dir)
    with dashboard(["--data-dir", str(data_dir)], cli_env(tmp_path / "env")) as (http, _):
        yield http, ids


def test_newcomer_pages(served: tuple[httpx.Client, dict[str, int]]) -> None:
    http, ids = served
    # /agents and /agents/ lead to the list of agents, not to a 404.
    for path in ("/agents", "/agents/"):
        page = http.get(path, follow_redirects=True)
        assert page.status_code == 200, path
        assert 'href="/agents/agent-1"' in page.text

    # No daily limit is set: the overview says so instead of "of 0 USDC daily limits".
    overview = http.get("/").text
    assert "0.04155 USDC" in overview  # spent today: the settled and the open payment
    assert "of 0 USDC" not in overview
    assert "no daily limit" in overview
    live = http.get("/api/live").json()
    assert live["figures"]["limit_today"] == "no daily limit"
    assert "no daily limit" in live["charts"]["burn_down"]

    # valid_before is a UTC time; the epoch stays in the export's *_s column.
    agent = http.get("/agents/agent-1").text
    assert utc(ids["valid_before"]) in agent
    assert str(ids["valid_before"]) not in agent
    unresolved = http.get("/export/agent-unresolved.json", params={"agent": "agent-1"}).json()
    (row,) = unresolved["rows"]
    assert row["valid_before"] == utc(ids["valid_before"])
    assert row["valid_before_s"] == str(ids["valid_before"])
    assert row["payment_id"] == format_transfer_id(ids["waiting"])

    # Every transfer id is the one form: the agent's payments and the audit page.
    payments = http.get("/export/agent-payments.csv", params={"agent": "agent-1"}).text
    assert format_transfer_id(ids["settled"]) in payments
    audit = http.get("/audit").text
    assert f"transfer:{format_transfer_id(ids['settled'])}" in audit
    assert f"transfer:{ids['settled']}<" not in audit
    log = json.loads(http.get("/export/audit.json").text)
    subjects = {r["transfer_id"] for r in log["rows"] if r["kind"].startswith("transfer_")}
    assert format_transfer_id(ids["settled"]) in subjects
