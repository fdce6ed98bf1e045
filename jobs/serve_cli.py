"""``farthing jobs serve``: the workers' page and JSON API as a real server.

The public URL (``--public-url``, or ``FARTHING_JOBS_PUBLIC_URL``) is the
site as workers reach it. Sign-in messages name it, and the server answers
only its host and, on a loopback bind, the localhost names (any other
``Host`` gets 421; ``--allowed-host`` adds a name). Without it sign-in is off,
and the server says so in one line at start: the Host header is never trusted
to say where the server is. A bind beyond loopback without a public URL is
refused, in one line, before anything opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from farthing.console import emit_json, err_console, fail, out_console

__all__ = ["PUBLIC_URL_ENV", "serve_command"]

PUBLIC_URL_ENV = "FARTHING_JOBS_PUBLIC_URL"


def serve_command(
    host: Annotated[
        str, typer.Option("--host", help="Bind address (loopback unless workers come from afar).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")
    ] = 8720,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar=PUBLIC_URL_ENV,
            help=(
                "The site's URL as workers open it, e.g. http://127.0.0.1:8720/ or "
                "https://jobs.example/. Sign-in messages name it; without it sign-in is off."
            ),
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Another host name to answer (repeatable); any other Host gets 421.",
        ),
    ] = None,
    session_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--session-secret-file",
            help="Private file with the session secret (default: random, sessions end at restart).",
        ),
    ] = None,
    session_lifetime_s: Annotated[
        int,
        typer.Option(
            "--session-lifetime", min=60, max=30 * 86_400, help="Seconds a sign-in lasts."
        ),
    ] = 12 * 3_600,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ready line as JSON.")] = False,
) -> None:
    """Serve the workers' page and JSON API: open jobs, wallet sign-in, accept, deliver, pay.

    Stops on Ctrl-C or SIGTERM, within a few seconds.
    """
    from farthing.errors import FarthingError
    from farthing.jobs.cli import _open
    from farthing.jobs.server import create_app, public_origin
    from farthing.jobs.worker_auth import WorkerSessions
    from farthing.paywall.facilitator.cli import bind_socket, serve_app
    from farthing.web import allowed_hosts

    try:
        public_url = None if public_url is None else public_origin(public_url)
        hosts = allowed_hosts(host, [public_url], allowed_host or ())
    except (FarthingError, ValueError) as exc:
        fail(str(exc))
    try:
        sessions = (
            WorkerSessions.from_file(session_secret_file, lifetime_s=session_lifetime_s)
            if session_secret_file is not None
            else WorkerSessions.ephemeral(lifetime_s=session_lifetime_s)
        )
    except Exception as exc:  # noqa: BLE001 - a bad secret file is one line, never the secret
        fail(f"cannot use the session secret: {exc}")
    workspace, service = _open()
    try:
        try:
            application = create_app(service, sessions=sessions, public_url=public_url, hosts=hosts)
        except ValueError as exc:
            fail(str(exc))
        sock = bind_socket(host, port)
        bound = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound}/"
        if as_json:
            emit_json(
                {"url": url, "publicUrl": public_url, "signIn": public_url is not None,
                 "network": service.chain.network, "agentId": service.books.agent_id,
                 "token": service.asset.address}
            )  # fmt: skip
        else:
            out_console.print(
                f"workers' page on {url} for {service.books.agent_id}'s jobs "
                f"({service.asset.symbol} on {service.chain.network}); Ctrl-C stops it",
                markup=False,
            )
        if public_url is None:
            err_console.print(
                "sign-in is off: no public URL to name in sign-in messages "
                f"(start with --public-url {url} or the URL workers open)",
                markup=False,
            )
        serve_app(application, sock)
    finally:
        workspace.close()
