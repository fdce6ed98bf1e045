"""``farthing wallet``: create keys, check balances, fund on dev chains, send.

Keys live encrypted in ``<data dir>/keys/<name>.json``. The passphrase comes
from ``$FARTHING_WALLET_PASSPHRASE`` or ``--passphrase-file``; it is never a
command-line argument and is never printed, nor is a private key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from farthing.console import emit_json, fail, out_console
from farthing.wallet.account import Wallet
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call
from farthing.wallet.keyfile import read_secret_file
from farthing.wallet.keystore import (
    KeystoreInfo,
    create_keystore,
    list_keystores,
    load_keystore_info,
    parse_private_key,
    read_passphrase,
    unlock_keystore,
    write_keystore,
)
from farthing.wallet.money import format_amount
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.target import ChainTarget, resolve_target

__all__ = ["app"]

app = typer.Typer(
    help="Create keys, check balances, fund on local dev chains, and send tokens.",
    no_args_is_help=True,
    add_completion=False,
)

# Gas money a faucet tops a fresh local wallet up to, and the level that triggers it.
_GAS_TOP_UP_WEI = 10**18
_GAS_LOW_WEI = 10**16

NameOpt = Annotated[str, typer.Option("--name", "-n", help="Wallet name (its keystore file).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line for scripts.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where keys and dev-chain records live (env FARTHING_DATA_DIR, default ~/.farthing).",
    ),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="File whose first line is the keystore passphrase (default: $FARTHING_WALLET_PASSPHRASE).",
    ),
]
NetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        help="local, base-sepolia or base (default: local, or inferred from --rpc-url).",
    ),
]
RpcOpt = Annotated[
    str | None, typer.Option("--rpc-url", help="JSON-RPC URL (overrides the network's default).")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Token address (overrides the network's stablecoin).")
]
AddressOpt = Annotated[
    str | None, typer.Option("--address", help="Use this address instead of a named wallet.")
]


def _settings(data_dir: Path | None) -> WalletSettings:
    return WalletSettings(data_dir=data_dir) if data_dir else WalletSettings()


def _info_json(info: KeystoreInfo) -> dict[str, Any]:
    return {"name": info.name, "address": info.address, "keystore": str(info.path)}


def _show_created(info: KeystoreInfo, verb: str, as_json: bool) -> None:
    if as_json:
        emit_json(_info_json(info))
        return
    out_console.print(f"{verb} wallet [bold]{info.name}[/bold]")
    out_console.print(f"  address   {info.address}")
    out_console.print(f"  keystore  {info.path} (encrypted, scrypt)")


@app.command()
def new(
    name: NameOpt = "default",
    passphrase_file: PassFileOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing wallet of this name.")
    ] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new key and save it in an encrypted keystore."""
    settings = _settings(data_dir)
    passphrase = read_passphrase(settings, passphrase_file=passphrase_file)
    info = create_keystore(settings, name, passphrase, overwrite=force)
    _show_created(info, "created", as_json)


@app.command("import")
def import_key(
    key_file: Annotated[
        Path,
        typer.Option(
            "--key-file", help="File holding the hex private key; '-' reads standard input."
        ),
    ],
    name: NameOpt = "default",
    passphrase_file: PassFileOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing wallet of this name.")
    ] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import an existing private key into an encrypted keystore."""
    settings = _settings(data_dir)
    passphrase = read_passphrase(settings, passphrase_file=passphrase_file)
    if str(key_file) == "-":
        raw = sys.stdin.readline()
    else:
        raw = read_secret_file(key_file, what="key file")
    signer = LocalSigner(parse_private_key(raw))
    info = write_keystore(settings, name, signer, passphrase, overwrite=force)
    _show_created(info, "imported", as_json)


@app.command()
def show(
    name: NameOpt = "default",
    show_all: Annotated[
        bool, typer.Option("--all", help="List every wallet in the data directory.")
    ] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a wallet's address and keystore (no passphrase needed)."""
    settings = _settings(data_dir)
    infos = list_keystores(settings) if show_all else [load_keystore_info(settings, name)]
    if as_json:
        emit_json([_info_json(i) for i in infos] if show_all else _info_json(infos[0]))
        return
    if not infos:
        out_console.print(
            f"no wallets in {settings.keys_dir}; create one with `farthing wallet new`"
        )
        return
    table = Table("name", "address", "keystore")
    for info in infos:
        table.add_row(info.name, info.address, str(info.path))
    out_console.print(table)


def _address_for(settings: WalletSettings, name: str, address: str | None) -> str:
    return checksum(address) if address else load_keystore_info(settings, name).address


def _target(
    settings: WalletSettings, network: str | None, rpc_url: str | None, token: str | None
) -> ChainTarget:
    return resolve_target(settings, network=network, rpc_url=rpc_url, token=token)


def _where(target: ChainTarget) -> str:
    label = target.network.name if target.network else target.chain.network
    return f"{label} ({target.chain.network})"


@app.command()
def balance(
    name: NameOpt = "default",
    address: AddressOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a wallet's stablecoin and gas balances."""
    settings = _settings(data_dir)
    who = _address_for(settings, name, address)
    target = _target(settings, network, rpc_url, token)
    wallet_asset = target.asset
    from farthing.wallet.token import Stablecoin

    atomic = Stablecoin(target.chain, wallet_asset).balance_of(who)
    wei = target.chain.native_balance(who)
    if as_json:
        emit_json(
            {
                "address": who,
                "network": target.chain.network,
                "token": wallet_asset.address,
                "symbol": wallet_asset.symbol,
                "decimals": wallet_asset.decimals,
                "balance_atomic": atomic,
                "balance": format_amount(atomic, wallet_asset.decimals),
                "native_wei": wei,
            }
        )
        return
    out_console.print(f"{who} on {_where(target)}")
    out_console.print(f"  {wallet_asset.format(atomic)}  (token {wallet_asset.address})")
    out_console.print(f"  {format_amount(wei, 18)} ETH for gas")


@app.command()
def fund(
    amount: Annotated[
        str, typer.Argument(help="How much to mint, e.g. 25 or 0.5 (in whole tokens).")
    ],
    name: NameOpt = "default",
    address: AddressOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mint test tokens to a wallet (local dev chains only) and top up its gas."""
    settings = _settings(data_dir)
    who = _address_for(settings, name, address)
    target = _target(settings, network, rpc_url, token)
    if target.minter is None:
        fail(
            f"fund mints test tokens on local dev chains only; {_where(target)} is not one "
            "(use that network's faucet)"
        )
    atomic = target.asset.parse(amount)
    if atomic == 0:
        fail("amount must be greater than zero")
    minter = target.minter.signer()
    from farthing.wallet.token import Stablecoin

    result = Stablecoin(target.chain, target.asset).mint(who, atomic, sender=minter)
    if not result.ok:
        fail(f"minting failed: {result.reason} ({result.revert_message or 'no revert message'})")
    gas_tx = None
    if target.chain.native_balance(who) < _GAS_LOW_WEI:
        topped = target.chain.send(Call(to=who, data=b"", value=_GAS_TOP_UP_WEI), sender=minter)
        if not topped.ok:
            fail(f"minted, but topping up gas failed: {topped.reason}")
        gas_tx = topped.tx_hash
    new_balance = Stablecoin(target.chain, target.asset).balance_of(who)
    if as_json:
        emit_json(
            {
                "address": who,
                "network": target.chain.network,
                "minted_atomic": atomic,
                "balance_atomic": new_balance,
                "transaction": result.tx_hash,
                "gas_transaction": gas_tx,
            }
        )
        return
    out_console.print(f"minted {target.asset.format(atomic)} to {who} ({result.tx_hash})")
    if gas_tx:
        out_console.print(f"  topped up gas with 1 ETH ({gas_tx})")
    out_console.print(f"  balance now {target.asset.format(new_balance)}")


@app.command()
def send(
    to: Annotated[str, typer.Argument(help="Recipient address.")],
    amount: Annotated[str, typer.Argument(help="How much to send, in whole tokens (e.g. 1.25).")],
    name: NameOpt = "default",
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send tokens from a wallet; the wallet pays the gas."""
    settings = _settings(data_dir)
    recipient = checksum(to)
    load_keystore_info(settings, name)  # a missing wallet is reported before the passphrase
    target = _target(settings, network, rpc_url, token)
    atomic = target.asset.parse(amount)
    if atomic == 0:
        fail("amount must be greater than zero")
    signer = unlock_keystore(
        settings, name, read_passphrase(settings, passphrase_file=passphrase_file)
    )
    wallet = Wallet(signer, target.chain, target.asset)
    have = wallet.balance().atomic
    if have < atomic:
        fail(
            f"insufficient balance: {wallet.address} has {target.asset.format(have)}, "
            f"sending {target.asset.format(atomic)}"
        )
    result = wallet.transfer(recipient, atomic)
    if not result.ok:
        detail = result.revert_message or result.reason
        fail(f"send failed: {result.reason} ({detail})")
    if as_json:
        emit_json(
            {
                "from": wallet.address,
                "to": recipient,
                "amount_atomic": atomic,
                "network": target.chain.network,
                "transaction": result.tx_hash,
            }
        )
        return
    out_console.print(
        f"sent {target.asset.format(atomic)} from {wallet.address} to {recipient} ({result.tx_hash})"
    )
