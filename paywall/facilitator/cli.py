"""``farthing facilitator serve``: the local facilitator as an x402 HTTP service.

It connects to the chain at ``--rpc-url``, lists that chain's network in
``GET /supported``, and settles with the key in ``--key-file`` (see
``farthing.paywall.keys`` for the two accepted forms). Once it listens it
prints one line (``--json``: ``{"url","network","signer"}``), then serves
until interrupted. The key and the token are never printed.

Several facilitator processes may settle with one key when they share
``--database-url`` (SQLite file or PostgreSQL): its account nonces are then
allocated there, under a row lock (``farthing.paywall.facilitator.submit``).

``--auth-capture-operator-key-file`` turns on x402 ``auth-capture`` (the
``delegated`` operator type): that key is ``extra.captureAuthorizer``, listed
in ``/supported``, and sends every escrow call. Refunds come out of the
operator's own balance, so they are relayed only for the payees named with
``--auth-capture-refund-receiver`` (the out-of-band funding agreement).

Who may call, and for what (DESIGN.md §13). Its relayer pays the gas of
every settlement, so:

- it settles only its own tokens: ``--asset`` (repeatable), else the
  network's USDC, else (a local chain) the token of ``farthing chain dev``'s
  deployment record; with none of these it does not start;
- ``--payee`` (repeatable) limits whom payments may pay, in every scheme;
- ``--api-key-file`` (``--token-file``) makes callers send
  ``Authorization: Bearer <key>``; bound beyond loopback it needs an API key
  or a payee list, and with ``--channel-authorizer-key-file`` (it then signs
  claims and refunds) an API key;
- it answers only its own host names (``farthing.web.HostGuard``): the
  localhost names on loopback, ``--public-url``'s host and ``--allowed-host``.

Discovery (``farthing.paywall.discovery``): what it verifies or settles is
cataloged from each payment's ``bazaar`` declaration, checked and never
fetched from, into its database (``--database-url``, else
``DATA_DIR/facilitator.sqlite``), and served read-only at
``GET /discovery/resources`` and ``GET /discovery/search``; ``--no-catalog``
turns that off.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from farthing.console import emit_json, fail, out_console
from farthing.web.hosts import LOOPBACK_NAMES

if TYPE_CHECKING:
    from farthing.paywall.discovery.catalog import Catalog
    from farthing.wallet.chain import Chain
    from farthing.wallet.money import Asset

__all__ = ["app", "bind_socket", "serve_app"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run an x402 v2 facilitator (verify and settle) on a chain you name.",
)


@app.callback()
def _group() -> None:
    """Run an x402 v2 facilitator (verify and settle) on a chain you name."""


def bind_socket(host: str, port: int) -> socket.socket:
    """Listen before announcing: whoever reads the ready line can connect at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_app(asgi_app: object, sock: socket.socket) -> None:
    """Serve ``asgi_app`` on an already-bound socket until SIGINT or SIGTERM."""
    import uvicorn

    config = uvicorn.Config(
        asgi_app,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def serve(
    rpc_url: Annotated[
        str, typer.Option("--rpc-url", help="JSON-RPC URL of the chain to settle on.")
    ],
    key_file: Annotated[
        Path,
        typer.Option("--key-file", help="Keystore (v3) or private hex key file that pays gas."),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0 picks one).")
    ] = 8402,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            "--token-file",
            help="Serve only callers sending Authorization: Bearer <the file's first line>.",
        ),
    ] = None,
    assets: Annotated[
        list[str] | None,
        typer.Option(
            "--asset",
            help="Settle this token (repeatable). Default: the network's USDC, or the "
            "local dev chain's token.",
        ),
    ] = None,
    payees: Annotated[
        list[str] | None,
        typer.Option("--payee", help="Settle only payments to this address (repeatable)."),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", help="The URL callers reach it at (its host is answered)."),
    ] = None,
    allowed_hosts_extra: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="Also answer this Host name (repeatable)."),
    ] = None,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help="Keystore passphrase file.")
    ] = None,
    rpc_timeout_s: Annotated[float, typer.Option("--rpc-timeout-s", min=0.1, max=300)] = 10.0,
    receipt_timeout_s: Annotated[
        float, typer.Option("--receipt-timeout-s", min=0.1, max=600)
    ] = 60.0,
    margin_s: Annotated[
        int,
        typer.Option("--valid-before-margin-s", min=0, max=3600, help="Refuse shorter windows."),
    ] = 10,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Share the key with other processes: allocate its nonces in this database.",
        ),
    ] = None,
    channel_authorizer_key_file: Annotated[
        Path | None,
        typer.Option(
            "--channel-authorizer-key-file",
            help="batch-settlement: sign claims and refunds as this receiver authorizer "
            "(listed in /supported) for servers that send no signature of their own.",
        ),
    ] = None,
    auth_capture_operator_key_file: Annotated[
        Path | None,
        typer.Option(
            "--auth-capture-operator-key-file",
            help="auth-capture: the operator key (extra.captureAuthorizer, listed in "
            "/supported) that places holds and captures, voids and refunds them. "
            "May be the --key-file.",
        ),
    ] = None,
    auth_capture_refund_receivers: Annotated[
        list[str] | None,
        typer.Option(
            "--auth-capture-refund-receiver",
            help="auth-capture: relay refunds (paid from the operator's balance) for "
            "this payee address. Repeatable.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Farthing's data directory: the dev chain's token is read from its record "
            "when no --asset is named (env FARTHING_DATA_DIR, default ~/.farthing).",
            show_default=False,
        ),
    ] = None,
    catalog_on: Annotated[
        bool,
        typer.Option(
            "--catalog/--no-catalog",
            help="Catalog what it settles (bazaar) in its database and serve /discovery/*.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ready line as JSON.")] = False,
) -> None:
    """Serve GET /supported, POST /verify and POST /settle (x402 v2 JSON; exact, batch-settlement, auth-capture)."""
    from farthing.errors import FarthingError
    from farthing.paywall.facilitator.api import facilitator_app
    from farthing.paywall.facilitator.local import LocalFacilitator
    from farthing.paywall.keys import load_key_file, load_token_file
    from farthing.paywall.records.store import PaymentStore
    from farthing.wallet.address import is_address
    from farthing.wallet.chain import open_chain
    from farthing.web import HostGuard, allowed_hosts

    if not rpc_url.startswith(("http://", "https://")):
        fail(f"--rpc-url must be an http(s):// JSON-RPC URL, got {rpc_url!r}")
    refund_receivers = list(auth_capture_refund_receivers or [])
    for flag, addresses in (
        ("--auth-capture-refund-receiver", refund_receivers),
        ("--asset", assets or []),
        ("--payee", payees or []),
    ):
        for address in addresses:
            if not is_address(address):
                fail(f"{flag} must be a 0x address, got {address!r}")
    try:
        hosts = allowed_hosts(host, [public_url], allowed_hosts_extra or [])
    except FarthingError as exc:
        fail(str(exc))
    if token_file is None and channel_authorizer_key_file is not None:
        fail(
            "--channel-authorizer-key-file signs claims and refunds for whoever calls: "
            "set --api-key-file so only the receiver's servers may ask"
        )
    if token_file is None and not payees and not (_loopback(host) and hosts <= LOOPBACK_NAMES):
        fail(
            f"bound to {host}, anyone who reaches it could make its relayer pay gas: "
            "name its callers (--api-key-file) or whom it pays (--payee)"
        )
    signer = load_key_file(key_file, passphrase_file=passphrase_file)
    token = load_token_file(token_file) if token_file is not None else None
    chain = open_chain(rpc_url, timeout_s=rpc_timeout_s, receipt_timeout_s=receipt_timeout_s)
    tokens = _own_tokens(chain, assets or [], data_dir)
    nonces = PaymentStore(database_url) if database_url else None
    authorizer = (
        load_key_file(channel_authorizer_key_file, passphrase_file=passphrase_file)
        if channel_authorizer_key_file is not None
        else None
    )
    operator = (
        load_key_file(auth_capture_operator_key_file, passphrase_file=passphrase_file)
        if auth_capture_operator_key_file is not None
        else None
    )
    facilitator = LocalFacilitator(
        chain,
        signer,
        assets=tokens,
        payees=payees or (),
        valid_before_margin_s=margin_s,
        nonce_store=nonces,
        channel_authorizer=authorizer,
        auth_capture_operator=operator,
        auth_capture_refund_receivers=refund_receivers,
    )
    # Only a facilitator on this machine alone may list resources on local hosts.
    local = _loopback(host) and hosts <= LOOPBACK_NAMES
    catalog = _catalog(database_url, data_dir, local) if catalog_on else None
    api = facilitator_app(
        facilitator, token=token.get_secret_value() if token else None, catalog=catalog
    )
    asgi = HostGuard(api, hosts=hosts)
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host}:{bound_port}"
    if as_json:
        emit_json(
            {
                "url": url,
                "network": chain.network,
                "signer": signer.address,
                "assets": [a.address for a in tokens],
                "payees": list(payees or []),
                "catalog": catalog.display_url if catalog is not None else None,
            }
        )
    else:
        auth = " (API key required)" if token else ""
        out_console.print(
            f"facilitator on {url} settling on {chain.network} as {signer.address}{auth}"
        )
    serve_app(asgi, sock)


def _catalog(database_url: str | None, data_dir: Path | None, local: bool) -> Catalog:
    """The discovery catalog in the facilitator's database, else a SQLite file in the data dir."""
    from farthing.errors import FarthingError
    from farthing.paywall.discovery.catalog import Catalog
    from farthing.wallet.settings import WalletSettings

    if database_url is None:
        folder = (
            WalletSettings(data_dir=data_dir).data_dir if data_dir else WalletSettings().data_dir
        )
        database_url = f"sqlite:///{folder / 'facilitator.sqlite'}"
    try:
        return Catalog(database_url, local_resources=local)
    except FarthingError as exc:
        fail(f"cannot open the discovery catalog: {exc}")


def _loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _own_tokens(chain: Chain, named: list[str], data_dir: Path | None) -> tuple[Asset, ...]:
    """The tokens this facilitator settles: those named, else the chain's own one."""
    from farthing.wallet.deployment import load_dev_deployment
    from farthing.wallet.errors import WalletError
    from farthing.wallet.networks import network_for_chain_id
    from farthing.wallet.settings import WalletSettings
    from farthing.wallet.token import read_asset

    try:
        if named:
            return tuple(read_asset(chain, address) for address in named)
        network = network_for_chain_id(chain.chain_id)
        if network is not None and network.usdc is not None:
            return (network.usdc,)
        if network is not None and network.is_local:
            try:
                record = load_dev_deployment(
                    WalletSettings(data_dir=data_dir).data_dir
                    if data_dir
                    else WalletSettings().data_dir
                )
            except WalletError:
                record = None
            if record is not None and record.chain_id == chain.chain_id:
                return (read_asset(chain, record.token.address),)
    except WalletError as exc:
        fail(f"cannot read the token: {exc}")
    fail(
        f"no token is known for {chain.network}: name the tokens to settle with "
        "--asset 0x… (repeatable)"
    )
