"""``farthing chain dev`` runs a real anvil, deploys once, survives restarts and stops cleanly.

The command runs as a real subprocess: the test reads its one JSON line,
talks to the token at the RPC URL it printed, interrupts it with SIGINT (exit
0, state saved), restarts it on the same state directory and checks the same
contracts and balances come back. Bad input (a port in use, a missing
binary) must give a one-line error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from farthing.devchain.node import (
    ANVIL_BIN_ENV,
    DEV_FUND_ATOMIC,
    ensure_deployment,
    find_anvil,
    start_anvil,
)
from farthing.wallet.chain import RpcChain, anvil_dev_accounts
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.errors import ChainError, DeploymentError
from farthing.wallet.token import Stablecoin, read_asset
from tests import zygote

pytestmark = pytest.mark.anvil

SUMMARY_KEYS = {"rpc_url", "chain_id", "network", "token", "batch_settler", "accounts"}


@pytest.fixture(autouse=True)
def _needs_anvil() -> None:
    try:
        find_anvil()
    except ChainError as exc:
        pytest.skip(str(exc))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _farthing(
    *args: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "FARTHING_DATA_DIR": str(data_dir), **(extra_env or {})}
    env.pop("FARTHING_DEBUG", None)
    return zygote.spawn(
        [sys.executable, "-m", "farthing", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _read_json_line(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        proc.kill()
        pytest.fail(f"no JSON line within {timeout_s} s")
    line = proc.stdout.readline()
    if not line:
        _, stderr = proc.communicate(timeout=10)
        pytest.fail(f"chain dev exited with {proc.returncode} before printing: {stderr}")
    payload: dict[str, Any] = json.loads(line)
    return payload


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    return proc.returncode, stdout, stderr


def test_chain_dev_json_runs_persists_and_reuses(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    port = _free_port()
    proc = _farthing(
        "chain",
        "dev",
        "--json",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        data_dir=tmp_path,
    )
    try:
        first = _read_json_line(proc)
        assert set(first) == SUMMARY_KEYS
        assert first["rpc_url"] == f"http://127.0.0.1:{port}"
        assert (first["chain_id"], first["network"]) == (31337, "eip155:31337")
        assert {k: first["token"][k] for k in ("name", "version", "decimals")} == {
            "name": "USD Coin",
            "version": "2",
            "decimals": 6,
        }
        dev = anvil_dev_accounts()
        assert first["accounts"] == [
            {"address": a.address, "private_key": a.private_key.get_secret_value()} for a in dev
        ]

        chain = RpcChain(first["rpc_url"])
        asset = read_asset(chain, first["token"]["address"])
        assert (asset.name, asset.symbol, asset.version, asset.decimals) == (
            "USD Coin",
            "USDC",
            "2",
            6,
        )
        token = Stablecoin(chain, asset)
        assert token.balance_of(dev[1].address) == DEV_FUND_ATOMIC
        assert chain.code_at(first["batch_settler"])
        assert token.transfer(dev[2].address, 123, sender=dev[1].signer()).ok

        record = load_dev_deployment(tmp_path / "unused", state_dir=state_dir)
        assert (record.token.address, record.batch_settler, record.rpc_url) == (
            first["token"]["address"],
            first["batch_settler"],
            first["rpc_url"],
        )
        assert token.mint(dev[5].address, 1, sender=record.minter_signer()).ok

        rival = _farthing(
            "chain",
            "dev",
            "--port",
            str(_free_port()),
            "--state-dir",
            str(state_dir),
            data_dir=tmp_path,
        )
        _, rival_err = rival.communicate(timeout=30)
        assert rival.returncode == 1
        assert (
            rival_err
            == f"error: another `farthing chain dev` is using {state_dir} (stop it, or pass another --data-dir)\n"
        )
    finally:
        code, stdout, stderr = _stop(proc, signal.SIGINT)
    assert code == 0, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert (state_dir / "anvil-state.json").stat().st_size > 0

    port = _free_port()
    proc = _farthing(
        "chain",
        "dev",
        "--json",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        data_dir=tmp_path,
    )
    try:
        second = _read_json_line(proc)
        assert (second["token"], second["batch_settler"]) == (
            first["token"],
            first["batch_settler"],
        )
        assert second["rpc_url"] == f"http://127.0.0.1:{port}"
        token = Stablecoin(RpcChain(second["rpc_url"]), asset)
        assert (
            token.balance_of(dev[2].address) == DEV_FUND_ATOMIC + 123
        )  # state survived, no second funding
        assert token.balance_of(dev[5].address) == DEV_FUND_ATOMIC + 1
        assert load_dev_deployment(tmp_path, state_dir=state_dir).rpc_url == second["rpc_url"]
    finally:
        code, _, stderr = _stop(proc, signal.SIGTERM)
    assert code == 0, stderr


def test_chain_dev_defaults_to_the_data_dir_and_fresh_starts_over(tmp_path: Path) -> None:
    port = _free_port()
    proc = _farthing("chain", "dev", "--json", "--port", str(port), "--fresh", data_dir=tmp_path)
    try:
        summary = _read_json_line(proc)
        assert load_dev_deployment(tmp_path).token.address == summary["token"]["address"]
    finally:
        code, _, stderr = _stop(proc, signal.SIGINT)
    assert code == 0, stderr
    assert (tmp_path / "chain" / "anvil-state.json").exists()


def test_chain_dev_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = _farthing("chain", "dev", "--port", str(port), data_dir=tmp_path)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use (is another dev chain running? "
        "pick another with --port)"
    )
    assert stdout == ""


def test_chain_dev_without_the_binary_says_what_to_do(tmp_path: Path) -> None:
    proc = _farthing(
        "chain", "dev", data_dir=tmp_path, extra_env={ANVIL_BIN_ENV: str(tmp_path / "missing")}
    )
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert (
        stderr.count("\n") == 1
        and "is not an executable file" in stderr
        and "Traceback" not in stderr
    )


def test_chain_dev_refuses_a_public_interface(tmp_path: Path) -> None:
    proc = _farthing("chain", "dev", "--host", "0.0.0.0", data_dir=tmp_path)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "loopback only" in stderr


def test_start_anvil_and_ensure_deployment_reuse_saved_state(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    with start_anvil(state_file=state) as node:
        deployment, reused = ensure_deployment(node.chain(), tmp_path, fund_atomic=5)
        assert not reused
        assert (
            Stablecoin(node.chain(), deployment.token).balance_of(anvil_dev_accounts()[9].address)
            == 5
        )
    with start_anvil(state_file=state) as node:
        again, reused = ensure_deployment(node.chain(), tmp_path, fund_atomic=5)
        assert reused and again.token == deployment.token
    state.unlink()
    with start_anvil(state_file=state) as node:
        # A fresh chain has no code at the recorded addresses: deploy anew.
        _, reused = ensure_deployment(node.chain(), tmp_path, fund_atomic=0)
        assert not reused


def test_a_stopped_anvil_frees_its_port() -> None:
    with start_anvil() as node:
        port = node.port
        pid = node.pid
        assert node.alive()
    started = time.monotonic()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    assert time.monotonic() - started < 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_no_deployment_record_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="start one with `farthing chain dev`"):
        load_dev_deployment(tmp_path)


def test_find_anvil_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = find_anvil()
    monkeypatch.setenv(ANVIL_BIN_ENV, str(real))
    assert find_anvil() == real
    monkeypatch.setenv(ANVIL_BIN_ENV, str(tmp_path / "nothing"))
    with pytest.raises(ChainError, match=ANVIL_BIN_ENV):
        find_anvil()
