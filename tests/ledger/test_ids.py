"""A transfer id has one written form, 32 lower-case hex digits, in every ledger command.

The formatter and parser are checked on their edges; then `farthing ledger
export` (CSV and JSON) runs as a real process on real books, and `farthing
ledger reconcile` runs as a real process against anvil on books that claim a
settlement the chain never saw: the break's transfer id, in the table and in
``--json``, is the id written the one way, the way the dashboard shows it;
so is a transfer edited behind the ledger's back in `farthing ledger verify`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from pathlib import Path

import pytest
from sqlalchemy import text

from farthing.ledger import (
    LedgerDatabase,
    LedgerSettings,
    NewTransfer,
    PaymentDetails,
    display_subject,
    format_transfer_id,
    parse_transfer_id,
    settle_payment,
    upgrade_database,
)
from farthing.wallet.chain import RpcChain
from tests.conftest import cli_env, run_farthing
from tests.ledger.test_reconcile_chain import make_world

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_format_and_parse_agree_on_the_edges() -> None:
    assert format_transfer_id(1) == "0" * 31 + "1"
    assert format_transfer_id(2**128 - 2) == "f" * 31 + "e"
    for bad in (-1, 2**128, True):
        with pytest.raises(ValueError):
            format_transfer_id(bad)
    some = 0x0ABC << 100
    assert parse_transfer_id(format_transfer_id(some)) == some
    assert parse_transfer_id(format_transfer_id(some).upper()) == some
    # Decimal, a prefix, a short form, 0 and the reserved maximum are not ids.
    for bad in (str(some), "0x" + format_transfer_id(some)[2:], f"{some:x}", "0" * 32, "f" * 32):
        assert parse_transfer_id(bad) is None
    assert display_subject(f"transfer:{some}") == f"transfer:{format_transfer_id(some)}"
    assert display_subject("approval:7") == "approval:7"


def test_ledger_export_writes_ids_in_the_one_form(tmp_path: Path, make_books) -> None:
    url = f"sqlite:///{tmp_path}/books.sqlite"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    books = make_books(database, budget=5_000_000)
    reserve = books.reserve(1_250_000, payment=PaymentDetails(resource="/a"))
    post = NewTransfer.post(id=books.new_id(), pending_id=reserve.id)
    assert books.transfer(reserve, post) == ["ok", "ok"]
    database.dispose()
    env = cli_env(tmp_path)
    done = run_farthing(["ledger", "export", "--database-url", url, "--format", "csv"], env=env)
    assert done.code == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    posted = next(r for r in rows if r["kind"] == "posted")
    assert posted["pending_id"] == format_transfer_id(reserve.id)
    assert posted["id"] == format_transfer_id(post.id)
    for row in rows:
        for column in ("id", "debit_account_id", "credit_account_id"):
            assert HEX32.fullmatch(row[column]), (column, row[column])
    done = run_farthing(["ledger", "export", "--database-url", url, "--json"], env=env)
    assert done.code == 0, done.stderr
    pending = next(r for r in json.loads(done.stdout) if r["kind"] == "pending")
    assert pending["id"] == format_transfer_id(reserve.id)
    assert pending["pending_id"] is None


@pytest.mark.anvil
def test_ledger_reconcile_names_a_break_by_the_one_form(
    anvil_chain: RpcChain, tmp_path: Path
) -> None:
    world = make_world(anvil_chain, tmp_path)
    assert anvil_chain.rpc_url is not None
    world.pay(100_000)
    ghost = world.pay(50_000, submit=False)
    with world.db.write() as session:  # the books claim a settlement that never happened
        settle_payment(
            session=session,
            payment_id=ghost,
            payment=PaymentDetails(
                tx_hash="0x" + secrets.token_hex(32), block_number=anvil_chain.block_number()
            ),
        )
    args = ["ledger", "reconcile", "--rpc-url", anvil_chain.rpc_url, "--token",
            world.asset.address, "--database-url", world.database_url,
            "--from-block", str(world.start_block)]  # fmt: skip
    env = cli_env(tmp_path / "cli")
    human = run_farthing(args, env=env)
    assert human.code == 1, human.stdout + human.stderr
    assert format_transfer_id(ghost) in human.stdout, human.stdout
    scripted = run_farthing([*args, "--json"], env=env)
    (item,) = scripted.json()["items"]
    assert item["kind"] == "missing_on_chain"
    assert item["transfer_id"] == format_transfer_id(ghost)


def test_ledger_verify_names_an_altered_transfer_in_the_one_form(
    tmp_path: Path, make_books
) -> None:
    url = f"sqlite:///{tmp_path}/books.sqlite"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    books = make_books(database, budget=5_000_000)
    reserve = books.reserve(1_250_000)
    assert books.transfer(reserve) == ["ok"]
    with database.write() as session:  # someone with the file edits a transfer
        session.execute(text("DROP TRIGGER ledger_transfer_no_update"))
        session.execute(text("UPDATE ledger_transfer SET amount = 1 WHERE id = :id"),
                        {"id": format_transfer_id(reserve.id)})  # fmt: skip
    database.dispose()
    env = cli_env(tmp_path)
    done = run_farthing(["ledger", "verify", "--database-url", url], env=env)
    assert done.code == 1
    shown = done.stdout + done.stderr
    assert f"transfer:{format_transfer_id(reserve.id)}" in shown, shown
    assert f"transfer:{reserve.id}" not in shown
    scripted = run_farthing(["ledger", "verify", "--database-url", url, "--json"], env=env)
    (problem,) = [p for p in scripted.json()["problems"] if p["kind"] == "transfer_altered"]
    assert problem["transfer_id"] == format_transfer_id(reserve.id)
