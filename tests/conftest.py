"""Fixtures shared by every test package: real chains, real processes, real ports, no mocks.

``chain`` is parametrized over the in-process memory chain and anvil, so a test
that takes it runs on both; the anvil half carries the ``anvil`` marker and is
skipped only when the anvil binary is missing (run ``npm ci``). Never move a
shared anvil's clock: tests that need ``advance_time`` start their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from farthing.wallet.chain import Chain, MemoryChain, RpcChain
from farthing.wallet.devchain import AnvilNode, find_anvil, start_anvil
from farthing.wallet.errors import ChainError

# A passphrase good enough for the keystore's checks; tests never print it.
TEST_PASSPHRASE = "test passphrase, not a secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1])


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    env.update(
        FARTHING_DATA_DIR=str(data_dir),
        FARTHING_WALLET_PASSPHRASE=TEST_PASSPHRASE,
        # Cheap scrypt keeps subprocess tests fast; the default is 2**18.
        FARTHING_WALLET_SCRYPT_N=str(2**12),
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def run_farthing(
    args: list[str], *, env: dict[str, str], stdin: str | None = None, timeout_s: float = 120
) -> CliResult:
    """Run ``python -m farthing ARGS`` as a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "farthing", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def anvil_missing_reason() -> str | None:
    """Why anvil tests cannot run here, or None when they can."""
    try:
        find_anvil()
    except ChainError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilNode]:
    """A throwaway anvil on a free port, shared by the session."""
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        yield node


@pytest.fixture(scope="session")
def memory_chain() -> Iterator[MemoryChain]:
    chain = MemoryChain()
    yield chain
    chain.close()


@pytest.fixture(scope="session")
def anvil_chain(anvil: AnvilNode) -> Iterator[RpcChain]:
    chain = anvil.chain()
    yield chain
    chain.close()


@pytest.fixture(params=["memory", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain(request: pytest.FixtureRequest) -> Chain:
    """Each backend in turn."""
    value: Chain = request.getfixturevalue(f"{request.param}_chain")
    return value


@dataclass(frozen=True)
class DevChainProcess:
    info: dict[str, Any]
    data_dir: Path
    process: subprocess.Popen[str]

    @property
    def rpc_url(self) -> str:
        return str(self.info["rpc_url"])

    def stop(self) -> int:
        """Interrupt the chain as Ctrl-C would; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.communicate(timeout=30)  # also closes the pipes
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        return self.process.returncode


def start_dev_chain(data_dir: Path, *, port: int | None = None) -> DevChainProcess:
    """Start ``farthing chain dev --json`` and wait for its one JSON line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "farthing", "chain", "dev", "--json", "--port", str(port or free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"farthing chain dev exited early: {err.strip()}")
    return DevChainProcess(json.loads(line), data_dir, process)


@pytest.fixture
def dev_chain(tmp_path: Path) -> Iterator[DevChainProcess]:
    """A real `farthing chain dev` process on a free port, with its own data dir."""
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    chain = start_dev_chain(tmp_path / "data")
    try:
        yield chain
    finally:
        chain.stop()
