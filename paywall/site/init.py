"""``farthing paywall init``: the config, the relayer key, and its gas, so ``serve`` just starts.

Every address and URL is checked before anything is written (one ``error:``
line naming the flag). The config comes from ``farthing.paywall.site.template``.
With a local facilitator (the default) a relayer key is created beside it,
mode 600, unless one is already there (it may hold gas: it is never
replaced). On a local dev chain (``farthing chain dev``) the relayer is given
gas at once, as ``farthing wallet fund`` does; on any other network the
relayer's address is printed with the gas it needs. The ``next:`` lines are
commands that work as printed, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from farthing.console import emit_json, fail, out_console

__all__ = ["init"]

PREVIEW_RULE = (
    "the free preview is whole blocks (paragraphs, headings, lists) from the start, "
    "as many as fit in the preview fraction of the text; a block that would pass it is not shown"
)


def _check_address(flag: str, value: str) -> str:
    from farthing.wallet.address import checksum
    from farthing.wallet.errors import AddressError

    try:
        return str(checksum(value))
    except AddressError:
        fail(f"{flag} wants an address (0x and 40 hex digits), got {value[:80]!r}")


def _check_url(flag: str, value: str | None) -> None:
    if value is None:
        return
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        hostname = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not hostname:
        fail(f"{flag} wants an http:// or https:// URL with a host, got {value[:80]!r}")


def _relayer_gas(address: str, rpc_url: str, token: str, data_dir: Path | None) -> dict[str, Any]:
    """Give the relayer gas on a local dev chain; elsewhere say what it needs."""
    from farthing.wallet.chain import Call
    from farthing.wallet.cli import _GAS_LOW_WEI, _GAS_TOP_UP_WEI
    from farthing.wallet.errors import WalletError
    from farthing.wallet.money import format_amount
    from farthing.wallet.settings import WalletSettings
    from farthing.wallet.target import resolve_target

    need = f"send it a little ETH for gas ({format_amount(_GAS_LOW_WEI, 18)} ETH or more)"
    try:
        settings = WalletSettings(data_dir=data_dir) if data_dir else WalletSettings()
        target = resolve_target(settings, rpc_url=rpc_url, token=token)
        balance = target.chain.native_balance(address)
        network = target.chain.network
    except WalletError as exc:
        return {"gas_transaction": None, "note": f"cannot read the chain ({exc}): {need}"}
    if balance >= _GAS_LOW_WEI:
        return {"gas_transaction": None, "note": f"has {format_amount(balance, 18)} ETH for gas"}
    if target.minter is None:
        return {"gas_transaction": None, "note": f"has no gas on {network}: {need}"}
    topped = target.chain.send(
        Call(to=address, data=b"", value=_GAS_TOP_UP_WEI), sender=target.minter.signer()
    )
    if not topped.ok:
        fail(f"wrote the config, but giving the relayer gas failed: {topped.reason}")
    return {
        "gas_transaction": topped.tx_hash,
        "note": f"given {format_amount(_GAS_TOP_UP_WEI, 18)} ETH for gas on the dev chain",
    }


def init(
    upstream: Annotated[str, typer.Option("--upstream", help="The site to paywall.")],
    pay_to: Annotated[str, typer.Option("--pay-to", help="Your wallet address.")],
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="The network's JSON-RPC URL.")],
    token: Annotated[str, typer.Option("--token", help="The USDC token address.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write.")] = Path(
        "farthing.toml"
    ),
    path: Annotated[str, typer.Option("--path", help="The articles' path glob.")] = "/posts/**",
    price: Annotated[str, typer.Option("--price", help="Per article.")] = "0.1 CNY",
    preview_fraction: Annotated[
        str, typer.Option("--preview-fraction", help="Free share: whole blocks up to it.")
    ] = "0.33",
    rate: Annotated[
        str, typer.Option("--rate", help="CURRENCY=RATE, USDC per one unit.")
    ] = "CNY=0.1385",
    network: Annotated[str, typer.Option("--network", help="Named in a comment.")] = "",
    key_file: Annotated[
        str | None, typer.Option("--key-file", help="Local facilitator key (relative path).")
    ] = None,
    facilitator_url: Annotated[
        str | None, typer.Option("--facilitator-url", help="A remote facilitator.")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Payment records.")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="The site's address, e.g. https://blog.example (needed for sign-in).",
        ),
    ] = None,
    channels: Annotated[
        bool,
        typer.Option(
            "--channels",
            help="Also sell through batch-settlement channels (writes a channels table and a "
            "receiver-authorizer key, mode 600).",
        ),
    ] = False,
    withdraw_delay_s: Annotated[
        int,
        typer.Option(
            "--withdraw-delay-s", min=900, max=2_592_000, help="With --channels: the payer's delay."
        ),
    ] = 900,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Farthing's data directory: where `farthing chain dev` recorded the dev chain "
            "(env FARTHING_DATA_DIR, default ~/.farthing).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON.")
    ] = False,
) -> None:
    """Write a commented farthing.toml, a receipt secret and a relayer key with gas."""
    from farthing.paywall.keys import load_key_file
    from farthing.paywall.site.config import parse_rate_flags
    from farthing.paywall.site.template import (
        AUTHORIZER_KEY_NAME,
        InitChoices,
        write_authorizer_key,
        write_config,
    )

    _check_address("--pay-to", pay_to)  # written as typed, once known to be an address
    _check_address("--token", token)
    for flag, value in (
        ("--upstream", upstream),
        ("--rpc-url", rpc_url),
        ("--facilitator-url", facilitator_url),
        ("--public-url", public_url),
    ):
        _check_url(flag, value)
    currency, rate_value = next(iter(parse_rate_flags([rate]).items()))
    if key_file is None and facilitator_url is None:
        key_file = "relayer.key"
    choices = InitChoices(
        upstream=upstream,
        pay_to=pay_to,
        rpc_url=rpc_url,
        token=token,
        network=network,
        path=path,
        price=price,
        preview_fraction=preview_fraction,
        currency=currency,
        rate=rate_value,
        key_file=key_file,
        facilitator_url=facilitator_url,
        database_url=database_url or f"sqlite:///{(output.parent / 'paywall.sqlite').resolve()}",
        channels=channels,
        withdraw_delay_s=withdraw_delay_s,
        public_url=public_url,
    )
    written = write_config(output, choices, force=force)
    relayer: dict[str, Any] | None = None
    if facilitator_url is None and key_file is not None:
        key_path = output.parent / key_file
        if key_path.exists():  # an existing relayer may hold gas: it is kept
            address = load_key_file(key_path).address
        else:
            address = write_authorizer_key(key_path)  # any new key, created mode 600
            written.append(key_path)
        relayer = {"address": address, **_relayer_gas(address, rpc_url, token, data_dir)}
    # Only addresses are shown; keys stay in their files.
    authorizer = load_key_file(output.parent / AUTHORIZER_KEY_NAME).address if channels else None
    steps = [
        f"farthing paywall serve --config {output}",
        f"farthing paywall revenue --config {output}",
    ]
    if as_json:
        emit_json(
            {"written": [str(p) for p in written], "receiver_authorizer": authorizer,
             "relayer": relayer, "public_url": public_url, "preview": PREVIEW_RULE,
             "next": steps[0], "then": steps[1:]}
        )  # fmt: skip
        return
    out_console.print(f"wrote {', '.join(str(p) for p in written)}")
    if relayer is not None:
        out_console.print(f"relayer {relayer['address']} (settles payments): {relayer['note']}")
    if public_url is None:
        out_console.print(
            "note: no --public-url: readers cannot sign in with the wallet that paid until "
            f"public_url is set in {output}"
        )
    if authorizer is not None:
        out_console.print(f"channels: receiver authorizer {authorizer}")
    out_console.print(f"preview: {PREVIEW_RULE}")
    out_console.print(f"next: {steps[0]}")
    out_console.print(f"next, after a sale (in another terminal): {steps[1]}")
