"""``farthing paywall revenue`` and ``farthing paywall resolve``: read the site's own payment records.

Both take ``--config`` and, without it, read ``./farthing.toml`` when the
command runs in the site's folder; the payment database is ``--database-url``,
else the config's ``database_url``, else ``paywall.sqlite`` in the data
directory (``--data-dir``, ``$FARTHING_DATA_DIR``, ``~/.farthing``). Every
report names the database it read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from farthing.console import emit_json, fail, out_console
from farthing.paywall.site.serve import default_database_url

__all__ = ["ConfigOpt", "DataDirOpt", "resolve", "revenue", "site_config"]

SITE_CONFIG = Path("farthing.toml")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="The site's farthing.toml (default: ./farthing.toml when it is there)."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Farthing's data directory, whose paywall.sqlite is used when neither "
        "--database-url nor a config names one (env FARTHING_DATA_DIR, default ~/.farthing).",
        show_default=False,
    ),
]


def site_config(config: Path | None) -> Any:
    """The config named by ``--config``, else ``./farthing.toml`` when present, else None."""
    from farthing.paywall.site.config import load_config

    if config is None and SITE_CONFIG.is_file():
        config = SITE_CONFIG
    return load_config(config) if config is not None else None


def revenue(
    config: ConfigOpt = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records.")
    ] = None,
    data_dir: DataDirOpt = None,
    decimals: Annotated[int, typer.Option("--decimals", min=0, max=36)] = 6,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Revenue per article, per day and in total, in USDC and in your currency."""
    from farthing.paywall.records.store import PaymentStore
    from farthing.paywall.site.revenue import revenue_report

    settings = site_config(config)
    url = database_url or (settings.database_url if settings is not None else None)
    store = PaymentStore(url or default_database_url(data_dir))
    where = store.display_url
    try:
        report = revenue_report(store, decimals=decimals)
    finally:
        store.dispose()
    if as_json:
        emit_json({"database": where, **report.to_json()})
        return
    if as_csv:
        out_console.file.write(report.to_csv())
        return
    out_console.print(f"database {where}", markup=False, highlight=False)
    data = report.to_json()
    for title, lines in (("article", data["articles"]), ("day", data["days"])):
        for line in lines:
            fiat = "".join(f", {v} {k}" for k, v in line["fiat"].items())
            out_console.print(
                f"{title} {line['key']}: {line['payments']} paid, {line['usdc']} USDC{fiat}"
            )
    total = data["total"]
    fiat = "".join(f", {v} {k}" for k, v in total["fiat"].items())
    out_console.print(f"total: {total['payments']} paid, {total['usdc']} USDC{fiat}")


def resolve(
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="Chain JSON-RPC URL (default: the config's).")
    ] = None,
    config: ConfigOpt = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records.")
    ] = None,
    ledger_database_url: Annotated[
        str | None, typer.Option("--ledger-database-url", help="Book revenue in this ledger.")
    ] = None,
    data_dir: DataDirOpt = None,
    lease_s: Annotated[
        float,
        typer.Option(
            "--lease-s", min=1.0, max=86400.0, help="The sweep's own lease on a row it resolves."
        ),
    ] = 180.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Resolve pending payments, and claims whose process died, from the chain; book revenue."""
    from farthing.paywall.facilitator.local import LocalFacilitator
    from farthing.paywall.facilitator.resolve import sweep
    from farthing.paywall.records.books import LedgerRevenueBook
    from farthing.paywall.records.store import PaymentStore
    from farthing.wallet.chain import open_chain
    from farthing.wallet.signer import LocalSigner

    settings = site_config(config)
    if settings is not None:
        rpc_url = rpc_url or settings.rpc_url
        database_url = database_url or settings.database_url
        ledger_database_url = ledger_database_url or settings.ledger_database_url
    if not rpc_url:
        fail("resolve reads the chain: pass --rpc-url (or --config with rpc_url)")
    chain = open_chain(rpc_url)
    # Resolution only reads the chain; this throwaway key never signs anything.
    facilitator = LocalFacilitator(chain, LocalSigner.generate())
    books = None
    if ledger_database_url:
        from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database

        database = LedgerDatabase(LedgerSettings(database_url=ledger_database_url))
        upgrade_database(database)
        books = LedgerRevenueBook(database)
    store = PaymentStore(database_url or default_database_url(data_dir))
    report = sweep(store, facilitator, books, lease_s=lease_s)
    counts = {
        "settled": report.settled,
        "failed": report.failed,
        "expired": report.expired,
        "still_pending": report.still_pending,
        "booked": report.booked,
    }
    if as_json:
        emit_json({"database": store.display_url, **counts})
    else:
        out_console.print(
            f"database {store.display_url}: "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()),
            markup=False,
            highlight=False,
        )
