"""``farthing paywall init|serve|resolve|revenue|claim|reconcile-channels``: a paywalled reverse proxy and its tools.

``init`` writes a commented ``farthing.toml`` (``farthing.paywall.site.template``);
``revenue`` reports settled revenue per article, per day and in total
(``farthing.paywall.site.revenue``, ``--json`` or ``--csv``).

``serve`` puts :class:`~farthing.paywall.edge.middleware.PaywallMiddleware` in
front of ``--upstream``, with routes from ``--config FILE`` and/or
``--route "GET /api/** 0.01 USDC"``. Payments are verified and settled by the
in-process facilitator (``--rpc-url`` and ``--key-file``) or by a remote one
(``--facilitator-url``). Once it listens it prints one line (``--json``:
``{"url","upstream","network","routes","channels","hosts","signIn"}``). It
answers only its own host names (``farthing.web.HostGuard``: the loopback
names when bound to loopback, the public URL's host, ``--allowed-host``);
any other ``Host`` gets 421. Sign-in with the paying wallet needs the public
URL; without one ``serve`` says so in one line on stderr. With a ``[channels]``
table (or ``--channel-authorizer-key-file``), routes whose ``schemes`` list
``batch-settlement`` also sell through channels
(``farthing.paywall.site.channels``): the channel rows live in the payment
database, claims run in the background while it serves, and the ready line
names the receiver authorizer's address (never its key).

``claim`` claims and settles now what batch-settlement channels earned
(all channels with unclaimed earnings, or one ``--channel``), signed by
``--authorizer-key-file`` and sent by the facilitator; with
``--ledger-database-url`` the ``Claimed`` and ``Settled`` events are booked.
``reconcile-channels`` matches the escrow's channel events with those books
(``farthing.paywall.schemes.batch_settlement.reconcile``) and exits 1 when breaks remain.

``resolve`` runs the sweep of ``farthing.paywall.facilitator.resolve``: pending payments,
and claims whose process died (their lease ran out), are settled, failed or
expired from what the chain says, and unbooked revenue is booked.

With the in-process facilitator, the relayer's account nonces are allocated
in the payment database, so several ``serve`` processes sharing that
database may settle with the same key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from farthing.console import emit_json, fail, out_console
from farthing.paywall.site.init import init
from farthing.paywall.site.options import (
    ChannelClaimIntervalOpt,
    ChannelMinDepositOpt,
    ChannelWithdrawDelayOpt,
    channel_authorizer_option,
)
from farthing.paywall.site.reports import ConfigOpt, DataDirOpt, resolve, revenue, site_config
from farthing.paywall.site.serve import (
    CHANNEL,
    BuiltPaywall,
    build_paywall,
    default_database_url,
    revenue_books,
    settlement_facilitator,
)

__all__ = [
    "BuiltPaywall",
    "app",
    "build_paywall",
    "default_database_url",
    "revenue_books",
    "settlement_facilitator",
]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Charge for a website or API with x402 v2, as a reverse proxy.",
)


@app.command()
def serve(
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="The site to put behind the paywall.")
    ] = None,
    config: ConfigOpt = None,
    route: Annotated[
        list[str] | None, typer.Option("--route", help="'[METHODS] PATH PRICE', repeatable.")
    ] = None,
    pay_to: Annotated[str | None, typer.Option("--pay-to", help="Default payee address.")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Token address (read from the chain).")
    ] = None,
    rate: Annotated[
        list[str] | None, typer.Option("--rate", help="CURRENCY=RATE, repeatable.")
    ] = None,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="Chain JSON-RPC URL.")] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Key that settles (local facilitator).")
    ] = None,
    facilitator_url: Annotated[
        str | None, typer.Option("--facilitator-url", help="A remote facilitator.")
    ] = None,
    facilitator_token_file: Annotated[Path | None, typer.Option("--facilitator-token-file")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records.")
    ] = None,
    ledger_database_url: Annotated[
        str | None, typer.Option("--ledger-database-url", help="Book revenue in this ledger.")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url", help="The site's address: resource URLs, sign-in, host names."
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="Another host name to answer, repeatable."),
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8080,
    claim_lease_s: Annotated[
        float,
        typer.Option(
            "--claim-lease-s",
            min=1.0,
            max=86400.0,
            help="How long a payment is one request's without renewal (handler + settlement).",
        ),
    ] = 180.0,
    channel_authorizer_key_file: Annotated[
        Path | None,
        channel_authorizer_option(
            "batch-settlement: the receiver authorizer's key file (signs claims, refunds)."
        ),
    ] = None,
    channel_withdraw_delay_s: ChannelWithdrawDelayOpt = None,
    channel_min_deposit: ChannelMinDepositOpt = None,
    channel_claim_interval_s: ChannelClaimIntervalOpt = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="The keystore passphrase (else the environment)."),
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ready line as JSON.")] = False,
) -> None:
    """Serve UPSTREAM behind the paywall."""
    from farthing.console import err_console
    from farthing.paywall.facilitator.cli import bind_socket, serve_app
    from farthing.paywall.site.config import ServeConfig, parse_rate_flags, parse_route_flag
    from farthing.web import HostGuard, allowed_hosts

    base = site_config(config) or ServeConfig()
    settings = base.with_flags(
        upstream=upstream,
        pay_to=pay_to,
        token=token,
        rpc_url=rpc_url,
        key_file=key_file,
        facilitator_url=facilitator_url,
        facilitator_token_file=facilitator_token_file,
        database_url=database_url,
        ledger_database_url=ledger_database_url,
        public_url=public_url,
        rates=parse_rate_flags(rate or []),
        routes=[parse_route_flag(text) for text in route or []],
        channels={
            "receiver_authorizer_key_file": channel_authorizer_key_file,
            "withdraw_delay_s": channel_withdraw_delay_s,
            "min_deposit": channel_min_deposit,
            "claim_interval_s": channel_claim_interval_s,
        },
    )
    # Checked before anything starts: a public bind needs its public URL.
    hosts = allowed_hosts(
        host, [settings.public_url], [*settings.allowed_hosts, *(allowed_host or [])]
    )
    built = build_paywall(
        settings, claim_lease_s=claim_lease_s, data_dir=data_dir, passphrase_file=passphrase_file
    )
    guarded = HostGuard(built.app, hosts=hosts)
    if built.sign_in_off is not None:
        err_console.print(built.sign_in_off, markup=False, highlight=False)
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{bound_host}:{bound_port}"
    routes = [f"{','.join(r.methods)} {r.path}" for r in settings.routes]
    channel_routes = [
        f"{','.join(r.methods)} {r.path}" for r in settings.routes if CHANNEL in r.schemes
    ]
    channels = None
    if built.receiver_authorizer is not None:
        channels = {
            "receiver_authorizer": built.receiver_authorizer,
            "withdraw_delay_s": built.withdraw_delay_s,
            "routes": channel_routes,
        }
    if as_json:
        emit_json(
            {"url": url, "upstream": settings.upstream, "network": built.network, "routes": routes,
             "channels": channels, "hosts": sorted(hosts), "signIn": built.sign_in_off is None}
        )  # fmt: skip
    else:
        out_console.print(
            f"paywall on {url} in front of {settings.upstream} ({built.network}): "
            f"{', '.join(routes)}"
        )
        if channels is not None:
            offered = ", ".join(channel_routes) or "no route (claims only)"
            out_console.print(
                f"channels (batch-settlement) on {offered}; receiver authorizer "
                f"{built.receiver_authorizer}, withdraw delay {built.withdraw_delay_s} s"
            )
    if channels is None:
        serve_app(guarded, sock)
    else:
        _serve_with_lifespan(guarded, sock)


app.command()(init)
app.command()(revenue)
app.command()(resolve)


def _serve_with_lifespan(asgi_app: Any, sock: Any) -> None:
    """Serve with the ASGI lifespan on: the channel claimer runs for as long as the app does."""
    import uvicorn

    config = uvicorn.Config(
        asgi_app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def claim(
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="Chain JSON-RPC URL.")],
    authorizer_key_file: Annotated[
        Path,
        typer.Option("--authorizer-key-file", help="The receiver authorizer that signs claims."),
    ],
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Key that pays gas (local facilitator).")
    ] = None,
    facilitator_url: Annotated[
        str | None, typer.Option("--facilitator-url", help="A remote facilitator.")
    ] = None,
    facilitator_token_file: Annotated[Path | None, typer.Option("--facilitator-token-file")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records and channel rows.")
    ] = None,
    ledger_database_url: Annotated[
        str | None, typer.Option("--ledger-database-url", help="Book the claims in this ledger.")
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="Only this channel id (0x + 64 hex).")
    ] = None,
    rpc_timeout_s: Annotated[
        float, typer.Option("--rpc-timeout-s", min=0.5, max=120.0, help="Per RPC call.")
    ] = 10.0,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Claim and settle now every channel with unclaimed earnings (or one ``--channel``)."""
    import re

    import anyio

    from farthing.console import err_console
    from farthing.paywall.keys import load_key_file
    from farthing.paywall.records.books import ChannelAsset
    from farthing.paywall.records.store import PaymentStore
    from farthing.paywall.schemes.batch_settlement.books import ChannelBookkeeper
    from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore
    from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain
    from farthing.wallet.chain import open_chain
    from farthing.wallet.errors import WalletError
    from farthing.wallet.token import read_asset

    only = None
    if channel is not None:
        if not re.fullmatch(r"0x[0-9a-fA-F]{64}", channel):
            fail(f"--channel wants 0x and 64 hex digits, got {channel[:80]!r}")
        only = frozenset({bytes.fromhex(channel[2:])})
    authorizer = load_key_file(authorizer_key_file)
    try:
        chain = open_chain(rpc_url, timeout_s=rpc_timeout_s)
        chain_id = chain.chain_id
        chain.block_number()
    except WalletError as exc:
        fail(f"cannot reach the chain at {rpc_url}: {exc}")
    url = database_url or default_database_url(data_dir)
    store = ChannelStore(
        url, domain=ChannelDomain(chain_id), network=chain.network, escrow=ChannelEscrow(chain)
    )
    records = [r for r in store.records() if only is None or r.channel_id in only]
    if only is not None and not records:
        fail(f"no channel {channel} in {store.display_url}")
    facilitator = settlement_facilitator(
        chain,
        facilitator_url=facilitator_url,
        facilitator_token_file=facilitator_token_file,
        key_file=key_file,
        nonce_store=PaymentStore(url),
    )
    bookkeeper = None
    books = revenue_books(ledger_database_url)
    if books is not None:
        assets = []
        try:
            for token in sorted({r.config.token for r in records}):
                read = read_asset(chain, token)
                assets.append(ChannelAsset(chain.network, token, read.decimals, read.symbol))
        except WalletError as exc:
            fail(f"cannot read the token at {rpc_url}: {exc}")
        bookkeeper = ChannelBookkeeper(books, store, tuple(assets))
    claimer = ChannelClaimer(store, facilitator, authorizer, bookkeeper=bookkeeper)
    waiting = [r for r in records if r.unclaimed > 0]
    if not as_json:
        total = sum(r.unclaimed for r in waiting)
        err_console.print(f"claiming {len(waiting)} channel(s), {total} atomic units unclaimed")
    report = anyio.run(lambda: claimer.tick(force=True, only=only))
    if as_json:
        emit_json(report.to_json())
    else:
        for cid, amount in report.claimed.items():
            out_console.print(f"claimed {amount} on {cid}")
        for tx in report.transactions:
            out_console.print(f"transaction {tx}")
        out_console.print(f"settled {report.settled}")
        for cid, short in report.shortfalls.items():
            out_console.print(f"shortfall {short} on {cid}: charged above what its escrow holds")
    if report.failures:
        fail(f"claim failed: {report.failures[0]}")


@app.command("reconcile-channels")
def reconcile_channels(
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="Chain JSON-RPC URL.")],
    ledger_database_url: Annotated[
        str, typer.Option("--ledger-database-url", help="The ledger the channels are booked in.")
    ],
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records and channel rows.")
    ] = None,
    from_block: Annotated[int, typer.Option("--from-block", min=0, help="First block.")] = 0,
    rpc_timeout_s: Annotated[
        float, typer.Option("--rpc-timeout-s", min=0.5, max=120.0, help="Per RPC call.")
    ] = 10.0,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Match the escrow's channel events with the channel books; exit 1 when breaks remain."""
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.reconcile import reconcile_channel_books
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore
    from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain
    from farthing.wallet.chain import open_chain
    from farthing.wallet.errors import WalletError

    try:
        chain = open_chain(rpc_url, timeout_s=rpc_timeout_s)
        chain_id = chain.chain_id
        chain.block_number()
    except WalletError as exc:
        fail(f"cannot reach the chain at {rpc_url}: {exc}")
    store = ChannelStore(
        database_url or default_database_url(data_dir),
        domain=ChannelDomain(chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )
    try:
        report = reconcile_channel_books(
            store, revenue_books(ledger_database_url), from_block=from_block
        )
    except WalletError as exc:
        fail(f"cannot read the escrow at {rpc_url}: {exc}")
    if as_json:
        emit_json(report.to_json())
    else:
        for cid, amount in report.receivables.items():
            out_console.print(f"receivable {amount} on {cid}")
        for found in report.breaks:
            out_console.print(
                f"break {found.kind} on {found.subject}: chain {found.chain}, books {found.books}"
            )
        out_console.print(f"{len(report.breaks)} break(s)")
    if report.breaks:
        raise typer.Exit(1)
