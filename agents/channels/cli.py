"""``farthing agent channels``: list the agent's batch-settlement channels, withdraw what is unspent, reconcile.

``list`` shows each channel's balance, charged total, signed ceiling and
status (``--json`` for scripts). ``withdraw CHANNEL_ID`` starts the timed
withdrawal (``initiateWithdraw``) of everything not yet claimed and stops the
channel; ``finalize CHANNEL_ID`` takes the money back once the delay has
passed and books it. ``reconcile`` matches the escrow's events with the books;
with ``--resolve`` it first settles from the chain what a process that died
left behind (``farthing.agents.channels.reconcile.resolve_channels``).
Both writes are on-chain transactions from the agent's wallet, which pays
their gas. A refusal is one line and exit status 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from farthing.agents.admin_cli import (
    DatabaseOpt,
    DataDirOpt,
    JsonOpt,
    NetworkOpt,
    PassFileOpt,
    RpcOpt,
    TokenOpt,
    WalletOpt,
    open_from_options,
)
from farthing.agents.channels.payer import ChannelPayer
from farthing.agents.channels.reconcile import reconcile_channels, resolve_channels
from farthing.agents.channels.store import get_channel, list_channels, update_channel
from farthing.agents.channels.withdraw import finish_withdrawal, start_withdrawal
from farthing.agents.workspace import Workspace
from farthing.console import emit_json, fail, out_console

__all__ = ["channels_app"]

channels_app = typer.Typer(
    help="The agent's batch-settlement channels: list, withdraw, finalize, reconcile.",
    no_args_is_help=True,
    add_completion=False,
)

ChannelArg = Annotated[str, typer.Argument(help="The channel id (0x and 64 hex digits).")]


@channels_app.command("list")
def list_command(
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every channel with its balance, charged total and status."""
    workspace = open_from_options(
        data_dir, None, None, network, rpc_url, token, database_url, with_wallet=False
    )
    try:
        rows = list_channels(workspace.books)
        asset = workspace.books.asset
    finally:
        workspace.close()
    if as_json:
        emit_json({"channels": [r.to_json() for r in rows]})
        return
    if not rows:
        out_console.print("no channels")
    for r in rows:
        out_console.print(
            f"{r.channel_id} to {r.config.receiver}: {r.status}"
            f"{' (' + r.reason + ')' if r.reason else ''}, balance {asset.format(r.balance)}, "
            f"charged {asset.format(r.charged)}, unspent {asset.format(r.available)}"
        )


@dataclass(frozen=True)
class _Where:
    """Which agent's books, wallet and chain a command works on."""

    data_dir: Path | None
    wallet: str | None
    passphrase_file: Path | None
    network: str | None
    rpc_url: str | None
    token: str | None
    database_url: str | None

    def open(self) -> Workspace:
        return open_from_options(
            self.data_dir,
            None,
            self.wallet,
            self.network,
            self.rpc_url,
            self.token,
            self.database_url,
            self.passphrase_file,
        )


def _act(channel_id: str, action: str, where: _Where, as_json: bool) -> None:
    workspace = where.open()
    try:
        if get_channel(workspace.books, channel_id) is None:
            fail(f"no channel {channel_id} in this agent's books")
        channels = ChannelPayer(workspace.payer)
        amount = 0
        if action == "withdraw":
            result = start_withdrawal(channels, channel_id.lower())
            if result == "ok":
                update_channel(workspace.books, channel_id, reason="withdrawn by the operator")
        else:
            result, amount = finish_withdrawal(channels, channel_id.lower())
        row = get_channel(workspace.books, channel_id)
    finally:
        workspace.close()
    if result != "ok":
        fail(f"{action} refused: {result}")
    if as_json:
        emit_json(
            {"result": result, "amount": str(amount), "channel": row.to_json() if row else None}
        )
        return
    out_console.print(f"{action}: ok" + (f", {amount} returned" if amount else ""))


@channels_app.command()
def withdraw(
    channel_id: ChannelArg,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the timed withdrawal of what the seller has not claimed; the channel signs no more."""
    where = _Where(data_dir, wallet, passphrase_file, network, rpc_url, token, database_url)
    _act(channel_id, "withdraw", where, as_json)


@channels_app.command()
def finalize(
    channel_id: ChannelArg,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """After the withdraw delay: take the unclaimed money back to the wallet and book it."""
    where = _Where(data_dir, wallet, passphrase_file, network, rpc_url, token, database_url)
    _act(channel_id, "finalize", where, as_json)


@channels_app.command()
def reconcile(
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    resolve: Annotated[
        bool,
        typer.Option(
            "--resolve",
            help="First settle from the chain what a dead process left: deposits, refunds, "
            "withdrawals, charges the chain proves.",
        ),
    ] = False,
    data_dir: DataDirOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Match the escrow's events (deposits, refunds, withdrawals, claims) with the books."""
    where = _Where(data_dir, wallet, passphrase_file, network, rpc_url, token, database_url)
    workspace = where.open()
    try:
        resolutions = resolve_channels(workspace.payer) if resolve else []
        breaks = reconcile_channels(workspace.payer)
    finally:
        workspace.close()
    if as_json:
        emit_json(
            {
                "resolutions": [
                    {"channel_id": r.channel_id, "action": r.action, "amount": str(r.amount)}
                    for r in resolutions
                ],
                "breaks": [
                    {
                        "channel_id": b.channel_id,
                        "kind": b.kind,
                        "chain_amount": str(b.chain_amount),
                        "books_amount": str(b.books_amount),
                    }
                    for b in breaks
                ],
            }
        )
    else:
        for r in resolutions:
            out_console.print(f"resolved {r.channel_id}: {r.action} {r.amount or ''}".rstrip())
        for b in breaks:
            out_console.print(
                f"[red]break[/red] {b.channel_id} {b.kind}: chain {b.chain_amount}, books {b.books_amount}"
            )
        out_console.print(f"{len(breaks)} channel break(s)")
    if breaks:
        raise typer.Exit(1)
