"""The local dev chain: anvil with persisted state, our stablecoin, batch settler and channels.

:func:`start_anvil` runs the anvil binary from the npm package
``@foundry-rs/anvil-linux-amd64`` (a plain ELF: no node needed at run time) and
stops it cleanly, so ``--state FILE`` is written on the way out.
:func:`ensure_deployment` deploys the contracts, or reuses them when the saved
state still holds their code, and funds anvil's public dev accounts. It also
places the x402 ``batch-settlement`` escrow and ERC-3009 deposit collector at
their canonical addresses (:func:`farthing.paywall.schemes.batch_settlement.vouchers.place_channel_contracts`),
and the x402 ``auth-capture`` escrow and its collectors at theirs
(:func:`farthing.paywall.schemes.auth_capture.contract.place_auth_capture_contracts`),
and Permit2 with the x402 ``upto`` proxy at theirs
(:func:`farthing.paywall.schemes.upto.contract.place_upto_contracts`).
Our ``SmartAccountFactory`` is written at
:data:`farthing.wallet.smart_account.DEV_ACCOUNT_FACTORY`, for payers with
smart accounts.
It writes the deployment record (``deployment.json`` beside the state file),
which other commands read with
:func:`farthing.wallet.deployment.load_dev_deployment`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

import farthing.wallet as wallet_package
from farthing.invariant import invariant
from farthing.paywall.schemes.auth_capture.contract import place_auth_capture_contracts
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.wallet.chain import DevAccount, RpcChain
from farthing.wallet.deployment import (
    DEPLOYMENT_FILE,
    MINTER_INDEX,
    DevDeployment,
    read_deployment,
    write_deployment,
)
from farthing.wallet.errors import ChainError, ChainUnavailableError, DeploymentError
from farthing.wallet.networks import ANVIL_CHAIN_ID
from farthing.wallet.smart_account import place_account_factory
from farthing.wallet.token import Stablecoin, deploy_batch_settler, deploy_stablecoin, read_asset

__all__ = [
    "ANVIL_BIN_ENV",
    "DEV_FUND_ATOMIC",
    "STATE_FILE",
    "AnvilNode",
    "TokenConfig",
    "ensure_deployment",
    "find_anvil",
    "lock_state_dir",
    "start_anvil",
]

ANVIL_BIN_ENV = "FARTHING_ANVIL_BIN"
STATE_FILE = "anvil-state.json"
# Tokens minted to each dev account on first deployment: 10,000 USDC.
DEV_FUND_ATOMIC = 10_000 * 10**6
_NPM_ANVIL = Path("node_modules") / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """The stablecoin's ERC-20 symbol and EIP-712 name and version."""

    name: str = "USD Coin"
    symbol: str = "USDC"
    version: str = "2"


# ---------------------------------------------------------------- the binary


def find_anvil() -> Path:
    """Locate anvil: ``$FARTHING_ANVIL_BIN``, then ``PATH``, then ``node_modules``.

    ``node_modules`` is searched walking up from the current directory and
    from this installed package (an editable install sits in the repository).
    """
    override = os.environ.get(ANVIL_BIN_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ChainError(f"{ANVIL_BIN_ENV}={override} is not an executable file")
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    for start in (Path.cwd(), Path(wallet_package.__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / _NPM_ANVIL
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    raise ChainError(
        "anvil not found: run `npm ci` in the Farthing repository (it installs "
        f"@foundry-rs/anvil-linux-amd64), or set {ANVIL_BIN_ENV} to the binary"
    )


# ---------------------------------------------------------------- running anvil


class AnvilNode:
    """A running anvil started by :func:`start_anvil`."""

    __slots__ = ("_process", "host", "port", "rpc_url", "state_file")

    def __init__(
        self, process: subprocess.Popen[bytes], host: str, port: int, state_file: Path | None
    ) -> None:
        self._process = process
        self.host = host
        self.port = port
        self.rpc_url = f"http://{host}:{port}"
        self.state_file = state_file

    def __repr__(self) -> str:
        return f"AnvilNode({self.rpc_url}, pid={self.pid})"

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def chain(self, *, timeout_s: float = 5.0, receipt_timeout_s: float = 30.0) -> RpcChain:
        return RpcChain(self.rpc_url, timeout_s=timeout_s, receipt_timeout_s=receipt_timeout_s)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM anvil if its parent dies.

    Without it, a parent killed with SIGKILL (a test-runner timeout) would
    leave anvil holding its port. Best effort: a no-op where prctl is missing.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: connections in TIME_WAIT from a previous run do not
        # count as "in use" (anvil binds the same way); a live listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise ChainError(
                f"port {port} on {host} is already in use (is another dev chain running? "
                "pick another with --port)"
            ) from None


def _wait_ready(
    process: subprocess.Popen[bytes], rpc_url: str, timeout_s: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            detail = f": {' | '.join(tail)}" if tail else ""
            raise ChainError(f"anvil exited with code {code} while starting{detail}")
        try:
            response = requests.post(rpc_url, json=body, timeout=1.0)
            if response.ok and "result" in response.json():
                return
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise ChainUnavailableError(f"anvil at {rpc_url} did not answer within {timeout_s:g} s")


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    # SIGINT lets anvil write its --state file before it exits.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


@contextmanager
def start_anvil(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state_file: Path | None = None,
    chain_id: int = ANVIL_CHAIN_ID,
    anvil_bin: Path | None = None,
    ready_timeout_s: float = 15.0,
    stop_timeout_s: float = 10.0,
    log_file: Path | None = None,
) -> Iterator[AnvilNode]:
    """Run anvil for the duration of a ``with`` block.

    ``port=0`` picks a free port. With ``state_file`` the chain is loaded from
    it (if present) and written back when anvil stops. anvil's output goes to
    ``log_file`` (a temporary file by default).
    """
    invariant(0 <= port <= 65535, "port must be between 0 and 65535")
    binary = anvil_bin or find_anvil()
    if port == 0:
        port = _free_port(host)
    else:
        _check_port_free(host, port)
    args = [str(binary), "--host", host, "--port", str(port), "--chain-id", str(chain_id)]
    if state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        # --state loads at start and dumps on exit; the interval bounds what a
        # crash (SIGKILL) can lose.
        args += ["--state", str(state_file), "--state-interval", "10"]
    with tempfile.TemporaryDirectory(prefix="farthing-anvil-") as scratch:
        log = log_file or Path(scratch) / "anvil.log"
        with open(log, "wb") as log_handle:
            # A session of its own: a terminal's Ctrl-C reaches us, and we stop
            # anvil in order, rather than racing it.
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Runs before exec and only calls prctl: safe despite threads.
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        try:
            node = AnvilNode(process, host, port, state_file)
            _wait_ready(process, node.rpc_url, ready_timeout_s, log)
            yield node
        finally:
            _stop(process, stop_timeout_s)


@contextmanager
def lock_state_dir(state_dir: Path) -> Iterator[None]:
    """Hold ``state_dir`` for one dev chain: two anvils must not share a state file."""
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ChainError(
                f"another `farthing chain dev` is using {state_dir} (stop it, or pass another --data-dir)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- the deployment


def _reusable(chain: RpcChain, record: DevDeployment, config: TokenConfig) -> bool:
    if record.chain_id != chain.chain_id:
        return False
    if not chain.code_at(record.token.address) or not chain.code_at(record.batch_settler):
        return False
    on_chain = read_asset(chain, record.token.address)
    return (on_chain.name, on_chain.symbol, on_chain.version) == (
        config.name,
        config.symbol,
        config.version,
    )


def ensure_deployment(
    chain: RpcChain,
    state_dir: Path,
    *,
    config: TokenConfig = TokenConfig(),
    fund_atomic: int = DEV_FUND_ATOMIC,
    accounts: tuple[DevAccount, ...] | None = None,
) -> tuple[DevDeployment, bool]:
    """Reuse the recorded contracts if the chain still has them, else deploy and fund.

    Returns the deployment and whether it was reused. A fresh deployment
    mints ``fund_atomic`` to every dev account; a reused one keeps its balances.
    """
    invariant(fund_atomic >= 0, "fund amount must not be negative")
    record_path = Path(state_dir) / DEPLOYMENT_FILE
    record = read_deployment(record_path)
    dev = accounts or chain.dev_accounts()
    # Idempotent: a saved state keeps them; an older one gets them now.
    channels = place_channel_contracts(chain)
    place_auth_capture_contracts(chain)  # at the canonical addresses: nothing to record
    place_upto_contracts(chain)  # Permit2 and the upto proxy, canonical too
    place_account_factory(chain)  # smart accounts for payers (farthing.wallet.smart_account)
    if record is not None and _reusable(chain, record, config):
        deployment = DevDeployment(
            chain.rpc_url or "",
            chain.chain_id,
            record.token,
            record.batch_settler,
            record.minter,
            channels,
        )
        write_deployment(record_path, deployment)  # the URL may have changed with --port
        return deployment, True
    owner = dev[MINTER_INDEX].signer()
    asset = deploy_stablecoin(
        chain, sender=owner, name=config.name, symbol=config.symbol, version=config.version
    )
    settler = deploy_batch_settler(chain, sender=owner)
    token = Stablecoin(chain, asset)
    configured = token.configure_minter(owner.address, sender=owner)
    if not configured.ok:
        raise DeploymentError(f"configuring the dev minter failed: {configured.reason}")
    if fund_atomic > 0:
        for account in dev:
            minted = token.mint(account.address, fund_atomic, sender=owner)
            if not minted.ok:
                raise DeploymentError(f"funding {account.address} failed: {minted.reason}")
    deployment = DevDeployment(
        chain.rpc_url or "", chain.chain_id, asset, settler, f"anvil:{MINTER_INDEX}", channels
    )
    write_deployment(record_path, deployment)
    return deployment, False
