"""``farthing chain …``: run the local dev chain.

``farthing chain dev`` starts anvil on 127.0.0.1 with its state persisted,
deploys (or reuses) the stablecoin and the batch settler, funds anvil's public
dev accounts and stays in the foreground until Ctrl-C or SIGTERM, which stop
anvil cleanly so its state is saved. With ``--json`` it prints exactly one JSON
line once the chain is ready.

The dev accounts' private keys are printed because they are anvil's public,
well-known keys, and only for this local chain.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.table import Table

from farthing.console import emit_json, err_console, fail, out_console
from farthing.devchain.node import (
    STATE_FILE,
    TokenConfig,
    ensure_deployment,
    find_anvil,
    lock_state_dir,
    start_anvil,
)
from farthing.wallet.chain import DevAccount
from farthing.wallet.deployment import DEPLOYMENT_FILE, DevDeployment, chain_state_dir
from farthing.wallet.errors import ChainError
from farthing.wallet.networks import ANVIL_CHAIN_ID
from farthing.wallet.settings import WalletSettings

__all__ = ["app"]

app = typer.Typer(
    name="chain",
    help="Run and inspect local chains.",
    add_completion=False,
    no_args_is_help=True,
)


def _summary_json(deployment: DevDeployment, accounts: tuple[DevAccount, ...]) -> dict[str, Any]:
    token = deployment.token
    return {
        "rpc_url": deployment.rpc_url,
        "chain_id": deployment.chain_id,
        "network": deployment.network,
        "token": {
            "address": token.address,
            "name": token.name,
            "symbol": token.symbol,
            "version": token.version,
            "decimals": token.decimals,
        },
        "batch_settler": deployment.batch_settler,
        # Anvil's public dev keys: printed for the local dev chain only.
        "accounts": [
            {"address": a.address, "private_key": a.private_key.get_secret_value()}
            for a in accounts
        ],
    }


def _print_summary(
    deployment: DevDeployment, accounts: tuple[DevAccount, ...], reused: bool, state_dir: Path
) -> None:
    token = deployment.token
    out_console.print(f"[bold green]Farthing dev chain ready[/] at [bold]{deployment.rpc_url}[/]")
    out_console.print(f"  network        {deployment.network}")
    verb = "reused from saved state" if reused else "deployed"
    out_console.print(
        f'  token          {token.address}  ({token.symbol}, EIP-712 "{token.name}" v{token.version}; {verb})'
    )
    out_console.print(f"  batch settler  {deployment.batch_settler}")
    out_console.print(f"  state          {state_dir / STATE_FILE}")
    table = Table(
        title="Dev accounts (anvil's public keys: never use them on a real network)",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("address")
    table.add_column("private key")
    for index, account in enumerate(accounts):
        table.add_row(str(index), account.address, account.private_key.get_secret_value())
    out_console.print(table)
    out_console.print("Press Ctrl-C to stop; the chain's state is saved on the way out.")


@app.command("dev")
def dev(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (loopback only).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port for the JSON-RPC endpoint.")
    ] = 8545,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Farthing's data directory; the chain's state and deployment record "
            "live in its chain/ folder.",
            show_default="$FARTHING_DATA_DIR, else ~/.farthing",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", hidden=True, help="The chain's own folder (older name)."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Forget the saved state and start a new chain.")
    ] = False,
    token_name: Annotated[str, typer.Option(help="EIP-712 name of the stablecoin.")] = "USD Coin",
    token_symbol: Annotated[str, typer.Option(help="Symbol of the stablecoin.")] = "USDC",
    token_version: Annotated[str, typer.Option(help="EIP-712 version of the stablecoin.")] = "2",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON line once ready.")
    ] = False,
) -> None:
    """Start anvil with our stablecoin and batch settler, and keep it running."""
    if host not in ("127.0.0.1", "localhost"):
        fail(f"the dev chain listens on loopback only, not {host!r}: its keys are public")
    if state_dir is not None and data_dir is not None:
        fail("give --data-dir or --state-dir, not both", exit_code=2)
    if state_dir is not None:
        folder = state_dir
    else:
        folder = chain_state_dir(data_dir if data_dir is not None else WalletSettings().data_dir)
    folder = folder.expanduser()
    with lock_state_dir(folder):
        if fresh:
            for name in (STATE_FILE, DEPLOYMENT_FILE):
                (folder / name).unlink(missing_ok=True)
        _run(host, port, folder, TokenConfig(token_name, token_symbol, token_version), json_output)


def _run(host: str, port: int, folder: Path, config: TokenConfig, json_output: bool) -> None:
    """Run the chain until a signal asks it to stop; the caller holds the state-dir lock."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start_anvil(
            host=host, port=port, state_file=folder / STATE_FILE, log_file=folder / "anvil.log"
        ) as node:
            chain = node.chain()
            if chain.chain_id != ANVIL_CHAIN_ID:
                raise ChainError(
                    f"anvil reports chain id {chain.chain_id}, expected {ANVIL_CHAIN_ID}"
                )
            accounts = chain.dev_accounts()
            deployment, reused = ensure_deployment(
                chain,
                folder,
                config=config,
                accounts=accounts,
            )
            if json_output:
                emit_json(_summary_json(deployment, accounts))
            else:
                _print_summary(deployment, accounts, reused, folder)
            while not stop.is_set():
                if stop.wait(0.25):
                    break
                if not node.alive():
                    raise ChainError("anvil stopped unexpectedly; see " + str(folder / "anvil.log"))
        if not json_output:
            err_console.print("dev chain stopped; state saved")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command("where")
def where(
    json_output: Annotated[
        bool, typer.Option("--json", help='Print one JSON line: {"anvil": PATH}.')
    ] = False,
) -> None:
    """Print the path of the anvil binary `farthing chain dev` runs."""
    if json_output:
        emit_json({"anvil": str(find_anvil())})
    else:
        out_console.print(str(find_anvil()))
