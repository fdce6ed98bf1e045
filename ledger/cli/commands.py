"""``farthing ledger``: migrate, report, export, verify and expire the books.

Every command takes ``--database-url`` (or ``FARTHING_LEDGER_DATABASE_URL``;
the default is SQLite under ``FARTHING_DATA_DIR`` or ``~/.farthing``). Tables
are for people; ``--json`` prints one JSON line for scripts. Problems with
the database surface as ``LedgerError``s, which the root command prints as
one line.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from farthing.console import emit_json, fail, out_console
from farthing.ledger.cli.reconcile import reconcile_command
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.ids import display_subject
from farthing.ledger.migration import check_schema, head_revision, upgrade_database
from farthing.ledger.report import (
    budget_report,
    export_rows,
    format_amount,
    ledger_decimals,
    revenue_report,
    spend_report,
)
from farthing.ledger.repository import expire_pending
from farthing.ledger.settings import LedgerSettings
from farthing.ledger.verification import VerifyReport, verify

__all__ = ["app"]

app = typer.Typer(
    name="ledger",
    help="Double-entry books of every payment: budgets, reports, export and audit.",
    no_args_is_help=True,
    add_completion=False,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="FARTHING_LEDGER_DATABASE_URL",
        help="sqlite:///PATH or postgresql://USER@HOST/DB. "
        "Default: SQLite in FARTHING_DATA_DIR (~/.farthing).",
        show_default=False,
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Farthing's data directory, whose ledger.sqlite is used when no --database-url "
        "is given (env FARTHING_DATA_DIR, default ~/.farthing).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON line instead of tables.")]
Since = Annotated[
    str | None, typer.Option("--since", help="Only from this UTC day on (YYYY-MM-DD).")
]
Until = Annotated[
    str | None, typer.Option("--until", help="Only before this UTC day (YYYY-MM-DD).")
]


class Dimension(StrEnum):
    agent = "agent"
    payee = "payee"
    resource = "resource"
    day = "day"


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


def _open(
    database_url: str | None, data_dir: Path | None = None, *, must_exist: bool = True
) -> LedgerDatabase:
    # Settings still read the other FARTHING_LEDGER_* variables from the environment.
    given: dict[str, Any] = {}
    if database_url is not None:
        given["database_url"] = database_url
    if data_dir is not None:
        given["data_dir"] = data_dir
    settings = LedgerSettings(**given)
    database = LedgerDatabase(settings, must_exist=must_exist)
    if must_exist:
        check_schema(database)
    return database


def _day_ns(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be a day such as 2025-01-31, not {value!r}")
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(start.timestamp()) * 1_000_000_000


def _money(amount: int | None, ledger: int, units: dict[int, tuple[int, str]]) -> str:
    if amount is None:
        return "-"
    decimals, symbol = units.get(ledger, (None, ""))
    return f"{format_amount(amount, decimals)} {symbol}".strip()


def _json_ready(row: Any) -> dict[str, Any]:
    # Amounts and ids travel as decimal strings, never as JSON numbers.
    out: dict[str, Any] = {}
    for name in row.__dataclass_fields__:
        value = getattr(row, name)
        out[name] = str(value) if isinstance(value, int) and name != "payment_count" else value
    return out


@app.command()
def migrate(
    database_url: DatabaseUrl = None, data_dir: DataDir = None, as_json: JsonFlag = False
) -> None:
    """Create the ledger database, or upgrade it to this version's schema."""
    database = _open(database_url, data_dir, must_exist=False)
    upgrade_database(database)
    if as_json:
        emit_json({"database": database.display_url, "schema": head_revision()})
        return
    out_console.print(f"ledger database at {database.display_url} is at schema {head_revision()}")


@app.command()
def report(
    database_url: DatabaseUrl = None,
    by: Annotated[
        list[Dimension] | None,
        typer.Option("--by", help="Group spend by this; repeat for several. Default: all four."),
    ] = None,
    merchant: Annotated[
        str | None,
        typer.Option("--merchant", help="Also show revenue received by this payee address."),
    ] = None,
    since: Since = None,
    until: Until = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Spend by agent, payee, resource and day; budget use; a merchant's revenue.

    The audit log is verified first: a ledger that fails verification is
    still reported (its figures cannot be trusted), and the command exits 1.
    """
    since_ns, until_ns = _day_ns(since, "--since"), _day_ns(until, "--until")
    dimensions = by or list(Dimension)
    database = _open(database_url, data_dir)
    with database.read() as session:
        audit = verify(session=session)
        units = ledger_decimals(session=session)
        spend = {
            d.value: spend_report(session=session, by=d.value, since_ns=since_ns, until_ns=until_ns)
            for d in dimensions
        }
        budgets = budget_report(session=session, now_ns=time.time_ns())
        revenue = (
            revenue_report(
                session=session, payee_address=merchant, since_ns=since_ns, until_ns=until_ns
            )
            if merchant
            else None
        )
    if as_json:
        emit_json(
            {
                "database": database.display_url,
                "audit": {
                    "ok": audit.ok,
                    "problems": len(audit.problems),
                    "first_problem": None if audit.ok else str(audit.first_problem),
                },
                "spend": {k: [_json_ready(r) for r in rows] for k, rows in spend.items()},
                "budgets": [_json_ready(r) for r in budgets],
                "revenue": None if revenue is None else [_json_ready(r) for r in revenue],
            }
        )
        if not audit.ok:
            raise typer.Exit(1)
        return
    out_console.print(f"books: {database.display_url}")
    for dimension, rows in spend.items():
        table = Table(title=f"Spend by {dimension}")
        for column in (dimension, "posted", "reserved", "payments"):
            table.add_column(column, justify="left" if column == dimension else "right")
        for s in rows:
            table.add_row(
                s.key,
                _money(s.posted, s.ledger, units),
                _money(s.reserved, s.ledger, units),
                str(s.payment_count),
            )
        out_console.print(table)
    table = Table(title="Budgets")
    for column in ("agent", "funded", "spent", "reserved", "remaining", "daily used / limit"):
        table.add_column(column, justify="left" if column == "agent" else "right")
    for b in budgets:
        daily = (
            f"{_money(b.daily_used, b.ledger, units)} / {_money(b.daily_limit, b.ledger, units)}"
        )
        table.add_row(
            b.agent_id,
            _money(b.funded, b.ledger, units),
            _money(b.spent, b.ledger, units),
            _money(b.reserved, b.ledger, units),
            _money(b.remaining, b.ledger, units),
            daily,
        )
    out_console.print(table)
    if revenue is not None:
        table = Table(title=f"Revenue of {merchant}")
        for column in ("resource", "revenue", "payments"):
            table.add_column(column, justify="left" if column == "resource" else "right")
        for r in revenue:
            table.add_row(r.resource, _money(r.posted, r.ledger, units), str(r.payment_count))
        out_console.print(table)
    if not audit.ok:
        _print_problems(audit)
        fail(
            f"the ledger failed verification, so these figures cannot be trusted: "
            f"{audit.first_problem} (run farthing ledger verify)"
        )


@app.command()
def export(
    database_url: DatabaseUrl = None,
    format: Annotated[
        ExportFormat, typer.Option("--format", help="csv (with a header) or json (an array).")
    ] = ExportFormat.csv,
    since: Since = None,
    until: Until = None,
    data_dir: DataDir = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The same as --format json: one JSON array line.")
    ] = False,
) -> None:
    """Write every transfer to stdout; ids and amounts are decimal strings."""
    since_ns, until_ns = _day_ns(since, "--since"), _day_ns(until, "--until")
    if as_json:
        format = ExportFormat.json
    database = _open(database_url, data_dir)
    with database.read() as session:
        rows = export_rows(session=session, since_ns=since_ns, until_ns=until_ns)
        if format is ExportFormat.csv:
            writer: csv.DictWriter[str] | None = None
            for row in rows:
                if writer is None:
                    writer = csv.DictWriter(sys.stdout, fieldnames=list(row), lineterminator="\n")
                    writer.writeheader()
                writer.writerow(row)
        else:
            sys.stdout.write("[")
            for i, row in enumerate(rows):
                sys.stdout.write(("," if i else "") + json.dumps(row, separators=(",", ":")))
            sys.stdout.write("]\n")
    sys.stdout.flush()


@app.command("verify")
def verify_command(
    database_url: DatabaseUrl = None, data_dir: DataDir = None, as_json: JsonFlag = False
) -> None:
    """Recompute the audit hash chain and check every row and balance against it.

    Exits 1 and names the first entry that was altered or removed.
    """
    database = _open(database_url, data_dir)
    with database.read() as session:
        result = verify(session=session)
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "entries": result.entry_count,
                "transfers": result.transfer_count,
                "accounts": result.account_count,
                "problems": [
                    {
                        "kind": p.kind,
                        "sequence": p.sequence,
                        "subject": p.subject,
                        "transfer_id": _transfer_id_of(p.subject),
                        "detail": p.detail,
                    }
                    for p in result.problems
                ],
            }
        )
        if not result.ok:
            raise typer.Exit(1)
        return
    if result.ok:
        out_console.print(
            f"ok: {result.entry_count} audit entries, {result.transfer_count} transfers and "
            f"{result.account_count} accounts verified"
        )
        return
    _print_problems(result)
    first = result.first_problem
    if first is not None and first.subject:
        first = dataclasses.replace(first, subject=display_subject(first.subject))
    fail(f"the ledger failed verification: {first}")


def _transfer_id_of(subject: str | None) -> str | None:
    """The transfer id of an audit subject, in the one written form; None for others."""
    shown = display_subject(subject or "")
    return shown.removeprefix("transfer:") if shown != (subject or "") else None


def _print_problems(result: VerifyReport) -> None:
    table = Table(title="Audit problems")
    for column in ("kind", "entry", "subject", "detail"):
        table.add_column(column, overflow="fold")
    for p in result.problems:
        table.add_row(
            p.kind,
            "-" if p.sequence is None else str(p.sequence),
            display_subject(p.subject) if p.subject else "-",
            p.detail,
        )
    out_console.print(table)


@app.command()
def expire(
    database_url: DatabaseUrl = None, data_dir: DataDir = None, as_json: JsonFlag = False
) -> None:
    """Release pending transfers whose timeout has passed."""
    database = _open(database_url, data_dir)
    total = 0
    while True:
        with database.write() as session:
            expired = expire_pending(session=session, limit=1_000)
        total += len(expired)
        if len(expired) < 1_000:
            break
    if as_json:
        emit_json({"expired": total})
    else:
        out_console.print(f"expired {total} pending transfers")


# Registered here so that `farthing ledger --help` lists it; the command
# lives in its own module because it reaches for the chain.
app.command("reconcile")(reconcile_command)
