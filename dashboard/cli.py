"""``farthing dashboard``: serve the dashboard over the books, on 127.0.0.1 unless told otherwise.

::

    farthing dashboard [--data-dir DIR | --database-url URL] [--merchant-database-url URL]
                       [--paywall-database-url URL] [--rpc-url URL]
                       [--host 127.0.0.1] [--port 8700] [--users-file FILE]
                       [--public-url URL] [--allowed-host NAME]... [--json]
    farthing dashboard --hash-password        # reads a password, prints its scrypt hash

The books are ``--database-url``, else ``ledger.sqlite`` in the data
directory (``--data-dir``, ``FARTHING_DATA_DIR``, ``~/.farthing``), as for
``farthing ledger report``. Revenue per site and article is read from
``--merchant-database-url`` when the merchant keeps its own books (as
``farthing demo`` does). Once it listens it prints one line (``--json``: one
JSON object with ``url``, ``database`` and ``hosts``).

Any bind but loopback needs credentials (``--users-file`` or
``FARTHING_DASHBOARD_USERS``) and the URL people open (``--public-url``);
without them the command refuses in one line. The server answers only the
localhost names (on loopback), the public URL's host and each
``--allowed-host``: any other ``Host`` gets 421, which stops DNS rebinding.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from farthing.console import emit_json, fail, out_console

__all__ = ["app"]

app = typer.Typer(add_completion=False)


@app.command()
def dashboard(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FARTHING_LEDGER_DATABASE_URL",
            help="The ledger database: sqlite:///PATH or postgresql://USER@HOST/DB "
            "(default: ledger.sqlite in the data directory).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Farthing's data directory, whose ledger.sqlite is used when no --database-url "
            "is given (env FARTHING_DATA_DIR, default ~/.farthing).",
            show_default=False,
        ),
    ] = None,
    merchant_database_url: Annotated[
        str | None,
        typer.Option(
            "--merchant-database-url",
            help="The merchant's own books, for revenue per site and article "
            "(default: the ledger above).",
            show_default=False,
        ),
    ] = None,
    paywall_database_url: Annotated[
        str | None,
        typer.Option(
            "--paywall-database-url",
            help="The paywall's payment store, for revenue per site and article.",
        ),
    ] = None,
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="The chain that reconciliation reads.")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="local, base-sepolia or base.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="Token address (default: the network's stablecoin)."),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Bind address; anything but loopback needs a login.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0 picks one).")
    ] = 8700,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            metavar="URL",
            envvar="FARTHING_DASHBOARD_PUBLIC_URL",
            help="The URL people open (needed beyond loopback); its host name is answered.",
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="Another host name to answer (repeatable).",
            show_default=False,
        ),
    ] = None,
    users_file: Annotated[
        Path | None,
        typer.Option(
            "--users-file", help="Credentials, `NAME ROLE HASH` a line (roles: viewer, approver)."
        ),
    ] = None,
    hash_password: Annotated[
        bool,
        typer.Option(
            "--hash-password", help="Read a password (twice) and print its scrypt hash, then exit."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the ready line as one JSON object.")
    ] = False,
) -> None:
    """Serve the dashboard: spend, budgets, approvals, breaks and audit state, live."""
    from farthing.dashboard.auth import hash_password as make_hash

    if hash_password:
        if sys.stdin.isatty():
            first = getpass.getpass("password: ")
            if getpass.getpass("again: ") != first:
                fail("the two passwords differ")
        else:
            first = sys.stdin.readline().rstrip("\n")
        out_console.print(make_hash(first), soft_wrap=True)
        return
    from farthing.dashboard.app import create_app, safe_url
    from farthing.dashboard.edge import hosts_of
    from farthing.dashboard.settings import DashboardSettings
    from farthing.ledger.settings import LedgerSettings
    from farthing.paywall.facilitator.cli import bind_socket

    if database_url is None:
        # The same default as `farthing ledger report`: the data directory's ledger.sqlite.
        found = LedgerSettings() if data_dir is None else LedgerSettings(data_dir=data_dir)
        database_url = found.database_url or f"sqlite:///{found.sqlite_path()}"
    overrides: dict[str, object] = {
        "database_url": database_url, "paywall_database_url": paywall_database_url,
        "merchant_database_url": merchant_database_url,
        "rpc_url": rpc_url, "network": network, "token": token, "host": host, "port": port,
        "public_url": public_url, "allowed_hosts": allowed_host or None,
    }  # fmt: skip
    if users_file is not None:
        overrides["users_file"] = users_file
    # The constructor, not model_validate: only __init__ reads the environment.
    chosen: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    settings = DashboardSettings(**chosen)
    application = create_app(settings)
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}"
    if as_json:
        emit_json({"url": url, "database": safe_url(settings.database_url),
                   "merchant_database": None if settings.merchant_database_url is None
                   else safe_url(settings.merchant_database_url),
                   "hosts": sorted(hosts_of(settings))})  # fmt: skip
    else:
        out_console.print(f"dashboard on {url}/ (Ctrl-C stops it)", soft_wrap=True)
    _serve(application, sock)


def _serve(application: Any, sock: Any) -> None:
    """Serve on the bound socket with the lifespan on: it runs the audit verifier."""
    import uvicorn

    config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
