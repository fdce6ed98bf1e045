"""``farthing ledger reconcile``: the books against the chain, with a breaks report.

Exits 0 only when the books and the chain agree: every payment the books hold
was checked and none broke. It exits 1 when breaks remain, and also when the
books hold payments this run did not check (on another network, in another
token, or booked outside the block range), saying how many and why: a run
that checked nothing must not read as a clean one. A cron job or CI step can
alert on either.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from farthing.console import emit_json, fail, out_console
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.ids import format_transfer_id
from farthing.ledger.migration import check_schema
from farthing.ledger.settings import LedgerSettings

if TYPE_CHECKING:
    from farthing.ledger.reconciliation import ReconciliationReport

__all__ = ["reconcile_command"]


def reconcile_command(
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="local, base-sepolia or base (default: inferred from --rpc-url, else local).",
        ),
    ] = None,
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC URL of the chain.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="Token address (default: the network's stablecoin)."),
    ] = None,
    from_block: Annotated[
        int, typer.Option("--from-block", min=0, help="First block to scan.")
    ] = 0,
    to_block: Annotated[
        int | None,
        typer.Option("--to-block", min=0, help="Last block to scan (default: the head)."),
    ] = None,
    address: Annotated[
        list[str] | None,
        typer.Option(
            "--address",
            help="Also scan this address (repeatable); payers and payees in the books are always scanned.",
        ),
    ] = None,
    resolve: Annotated[
        bool,
        typer.Option(
            "--resolve",
            help="Post or void pending payments past their window, and reverse or rebook settlements missing on chain, from the chain's record of the authorization.",
        ),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FARTHING_LEDGER_DATABASE_URL",
            help="The ledger database (default: SQLite in FARTHING_DATA_DIR).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Farthing's data directory: its ledger.sqlite (unless --database-url) and "
            "the dev chain's record (env FARTHING_DATA_DIR).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line for scripts.")
    ] = False,
) -> None:
    """Match the books to the token's Transfer logs and report breaks by kind.

    Kinds: missing_on_chain, missing_in_ledger, amount_mismatch and
    pending_past_timeout. Exits 1 while any break remains, or while the books
    hold payments this run did not check (another network or token, or
    outside the block range).
    """
    # The chain stack is imported here so other ledger commands start fast.
    from farthing.ledger.chainview import TokenChainView
    from farthing.ledger.reconciliation import reconcile
    from farthing.wallet.address import checksum
    from farthing.wallet.settings import WalletSettings
    from farthing.wallet.target import resolve_target

    wallet_settings = WalletSettings(data_dir=data_dir) if data_dir else WalletSettings()
    target = resolve_target(wallet_settings, network=network, rpc_url=rpc_url, token=token)
    given: dict[str, Any] = {}
    if database_url is not None:
        given["database_url"] = database_url
    if data_dir is not None:
        given["data_dir"] = data_dir
    database = LedgerDatabase(LedgerSettings(**given), must_exist=True)
    check_schema(database)
    extra = tuple(checksum(a) for a in (address or []))
    view = TokenChainView(target.chain, target.asset)
    report = reconcile(
        database, view, from_block=from_block, to_block=to_block, addresses=extra, resolve=resolve
    )
    remaining = report.unresolved_breaks
    if as_json:
        emit_json(_as_json(report))
    else:
        _print(report)
    if remaining:
        if not as_json:
            fail(f"{len(remaining)} break(s) between the books and the chain")
        raise typer.Exit(1)
    if report.unchecked:
        if not as_json:
            fail(f"{report.unchecked_count} payment(s) in the books were not checked; see above")
        raise typer.Exit(1)


def _as_json(report: ReconciliationReport) -> dict[str, Any]:
    return {
        "network": report.network,
        "token": report.token_address,
        "from_block": report.from_block,
        "to_block": report.to_block,
        "payments_checked": report.payments_checked,
        "breaks": len(report.breaks),
        "unresolved": len(report.unresolved_breaks),
        "unchecked": report.unchecked_count,
        "agree": report.agrees,
        "unchecked_items": [
            {
                "reason": u.reason,
                "count": u.count,
                "network": u.network,
                "token": u.token_address,
                "detail": u.detail,
            }
            for u in report.unchecked
        ],
        "by_kind": report.counts(),
        "items": [b.to_json() for b in report.breaks],
        "resolutions": [
            {
                "transfer_id": format_transfer_id(r.transfer_id),
                "action": r.action,
                "result": r.result,
                "tx_hash": r.tx_hash,
            }
            for r in report.resolutions
        ],
    }


def _print(report: ReconciliationReport) -> None:
    out_console.print(
        f"reconciled {report.payments_checked} payments of {report.token_address} on "
        f"{report.network}, blocks {report.from_block}..{report.to_block}"
    )
    if report.breaks:
        table = Table("kind", "transfer", "tx", "books", "chain", "detail")
        for b in report.breaks:
            table.add_row(
                b.kind.value,
                "-" if b.transfer_id is None else format_transfer_id(b.transfer_id),
                b.tx_hash or "-",
                "-" if b.ledger_amount is None else str(b.ledger_amount),
                "-" if b.chain_amount is None else str(b.chain_amount),
                b.detail,
            )
        out_console.print(table)
    for r in report.resolutions:
        out_console.print(f"resolved {format_transfer_id(r.transfer_id)}: {r.action} ({r.result})")
    for u in report.unchecked:
        out_console.print(f"not checked: {u.detail}", markup=False, highlight=False)
    if report.agrees:
        out_console.print("0 breaks: the books and the chain agree")
    elif not report.unresolved_breaks:
        out_console.print(
            f"0 breaks among the {report.payments_checked} payments checked, but "
            f"{report.unchecked_count} payment(s) in the books were not checked"
        )
