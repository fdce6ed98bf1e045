"""What ``farthing paywall serve`` builds: the reverse proxy behind the paywall, from settings.

:func:`build_paywall` turns checked settings (``farthing.paywall.site.config``)
into the ASGI app: the chain and its token, the payment database, the
facilitator (remote by URL, else local with a key), the revenue books, the
receipt signer and, with a ``[channels]`` table, the batch-settlement
options; every 402 declares the ``bazaar`` extension and the site serves
``/.well-known/x402`` (``farthing.paywall.discovery``). Every mistake is one
``error:`` line (``farthing.console.fail``). The command line itself, and the host names it answers, live in
``farthing.paywall.cli``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from farthing.console import fail

__all__ = [
    "CHANNEL",
    "BuiltPaywall",
    "build_paywall",
    "data_dir_of",
    "default_database_url",
    "revenue_books",
    "settlement_facilitator",
    "well_known",
]


def data_dir_of(data_dir: Path | None = None) -> Path:
    """``--data-dir``, else ``$FARTHING_DATA_DIR``, else ``~/.farthing``."""
    chosen = data_dir or os.environ.get("FARTHING_DATA_DIR") or Path.home() / ".farthing"
    return Path(chosen).expanduser()


def default_database_url(data_dir: Path | None = None) -> str:
    """``sqlite:///DATA_DIR/paywall.sqlite`` (``--data-dir``, ``$FARTHING_DATA_DIR``, ``~/.farthing``)."""
    return f"sqlite:///{data_dir_of(data_dir) / 'paywall.sqlite'}"


CHANNEL: Final = "batch-settlement"


@dataclass(frozen=True, slots=True)
class BuiltPaywall:
    """What :func:`build_paywall` returns: the app, its network, and the channel terms if on."""

    app: Any
    network: str
    receiver_authorizer: str | None = None  # the address only: the key stays in the signer
    withdraw_delay_s: int | None = None
    sign_in_off: str | None = None  # why article routes offer no sign-in (no public URL)


def settlement_facilitator(
    chain: Any,
    *,
    facilitator_url: str | None,
    facilitator_token_file: Path | None,
    key_file: Path | None,
    nonce_store: Any = None,
    passphrase_file: Path | None = None,
    signer: Any = None,
) -> Any:
    """The facilitator the command-line options ask for: remote by URL, else local with a key.

    ``nonce_store`` (a ``PaymentStore``) allocates the local relayer's nonces
    in a database shared with other processes using the same key. A
    keystore's passphrase comes from ``passphrase_file`` or the environment;
    ``signer``, when the caller already read the key, is used as it is.
    """
    from farthing.paywall.facilitator.local import LocalFacilitator
    from farthing.paywall.facilitator.remote import RemoteFacilitator
    from farthing.paywall.keys import load_key_file, load_token_file

    if facilitator_url:
        bearer = (
            load_token_file(facilitator_token_file).get_secret_value()
            if facilitator_token_file
            else None
        )
        return RemoteFacilitator(facilitator_url, token=bearer)
    if signer is None:
        if key_file is None:
            fail("the local facilitator settles on-chain: pass --key-file (or --facilitator-url)")
        signer = load_key_file(key_file, passphrase_file=passphrase_file)
    return LocalFacilitator(chain, signer, nonce_store=nonce_store)


def revenue_books(ledger_database_url: str | None) -> Any:
    """Revenue books in the ledger at ``ledger_database_url`` (migrated), or None."""
    if not ledger_database_url:
        return None
    from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
    from farthing.paywall.records.books import LedgerRevenueBook

    database = LedgerDatabase(LedgerSettings(database_url=ledger_database_url))
    upgrade_database(database)
    return LedgerRevenueBook(database)


def build_paywall(
    settings: Any,
    *,
    claim_lease_s: float | None = None,
    data_dir: Path | None = None,
    passphrase_file: Path | None = None,
) -> BuiltPaywall:
    """The proxy behind the middleware, from checked settings, with its network and channels."""
    from farthing.paywall.discovery.declaration import SiteDiscovery
    from farthing.paywall.edge.middleware import PaywallMiddleware, PaywallOptions
    from farthing.paywall.keys import load_key_file, load_token_file
    from farthing.paywall.records.store import PaymentStore
    from farthing.paywall.site.channels import (
        build_channel_options,
        load_receiver_authorizer,
        require_channel_facilitator,
    )
    from farthing.paywall.site.proxy import ReverseProxy
    from farthing.wallet.chain import open_chain
    from farthing.wallet.token import read_asset

    if not settings.upstream:
        fail("no upstream: pass --upstream URL or set upstream in the config file")
    if not settings.routes:
        fail(
            "no paid routes: pass --route 'GET /path 0.01 USDC' or add [[routes]] to the config file"
        )
    if not settings.pay_to:
        fail("no payee: pass --pay-to ADDRESS or set pay_to in the config file")
    if not settings.rpc_url or not settings.token:
        fail("the token is described by the chain: pass --rpc-url and --token")
    channel_settings = settings.channels
    offered = [r.path for r in settings.routes if CHANNEL in r.schemes]
    if offered and channel_settings is None:
        fail(f"the route {offered[0]} offers batch-settlement: add a [channels] table")
    # Read before the chain is opened, so a bad key file is the first thing said.
    authorizer = (
        None
        if channel_settings is None
        else load_receiver_authorizer(channel_settings, passphrase_file=passphrase_file)
    )
    relayer = None
    if not settings.facilitator_url and settings.key_file is not None:
        relayer = load_key_file(settings.key_file, passphrase_file=passphrase_file)
    chain = open_chain(settings.rpc_url)
    asset = read_asset(chain, settings.token)
    database_url = settings.database_url or default_database_url(data_dir)
    store = PaymentStore(database_url)
    facilitator = settlement_facilitator(
        chain,
        facilitator_url=settings.facilitator_url,
        facilitator_token_file=settings.facilitator_token_file,
        key_file=settings.key_file,
        signer=relayer,
        nonce_store=store,  # processes sharing the database may share the relayer key
    )
    if settings.rounding not in ("exact", "up"):
        fail(f"rounding must be 'exact' or 'up', got {settings.rounding!r}")
    channels = None
    if channel_settings is not None and authorizer is not None:
        token_file = settings.facilitator_token_file
        require_channel_facilitator(
            facilitator,
            chain.network,
            probe_token=(
                load_token_file(token_file).get_secret_value()
                if settings.facilitator_url and token_file
                else None
            ),
        )
        channels = build_channel_options(
            channel_settings,
            chain=chain,
            asset=asset,
            database_url=database_url,
            authorizer=authorizer,
            rates=settings.rates,
            rounding=settings.rounding,
        )
    books = revenue_books(settings.ledger_database_url)
    receipts = _receipts(settings)
    discovery = getattr(settings, "discovery", None) or SiteDiscovery()
    page: dict[str, Any] = {}
    if settings.preview_selectors:
        page["preview_selectors"] = tuple(settings.preview_selectors)
    if claim_lease_s is not None:
        page["claim_lease_s"] = claim_lease_s
    options = PaywallOptions(
        routes=list(settings.routes),
        facilitator=facilitator,
        store=store,
        books=books,
        pay_to=settings.pay_to,
        asset=asset,
        rates=settings.rates,
        rounding=settings.rounding,
        public_url=settings.public_url,
        receipts=receipts,
        channels=channels,
        discovery=discovery,
        **page,
    )
    paywall = PaywallMiddleware(ReverseProxy(settings.upstream), options=options)
    app = well_known(paywall, settings, discovery)
    if getattr(settings, "mcp", False):
        from farthing.paywall.mcp.mount import site_mount

        app = site_mount(app, paywall)  # /mcp: the fetch tool over the same paywall
    articles = any(
        r.preview_fraction is not None or r.preview_blocks is not None for r in settings.routes
    )
    sign_in_off = paywall.sign_in_off_reason if articles else None
    if channels is None:
        return BuiltPaywall(app, chain.network, sign_in_off=sign_in_off)
    return BuiltPaywall(
        app,
        chain.network,
        channels.receiver_authorizer.address,
        channels.withdraw_delay_s,
        sign_in_off=sign_in_off,
    )


def well_known(app: Any, settings: Any, discovery: Any) -> Any:
    """``app`` behind ``/.well-known/x402``: the paid routes as pointers from the public URL."""
    from farthing.paywall.discovery.manifest import Pointer, WellKnown, manifest_document

    if not discovery.manifest:
        return app
    if not settings.public_url:
        return WellKnown(app, document=None)
    pointers = [
        Pointer(listed, method.upper(), route.description)
        for route in settings.routes
        if (listed := discovery.listed_path(route.path)) is not None
        for method in route.methods
    ]
    document = manifest_document(
        settings.public_url, pointers, name=discovery.name, description=discovery.description
    )
    return WellKnown(app, document=document)


def _receipts(settings: Any) -> Any:
    """The receipt signer: the configured secret file, else a secret for this process only."""
    from farthing.paywall.edge.receipts import RECEIPT_LIFETIME_S_DEFAULT, Receipts

    lifetime_s = getattr(settings, "receipt_lifetime_s", None) or RECEIPT_LIFETIME_S_DEFAULT
    secret_file = getattr(settings, "receipt_secret_file", None)
    if secret_file is None:
        return Receipts.ephemeral(lifetime_s=lifetime_s)
    return Receipts.from_file(secret_file, lifetime_s=lifetime_s)
