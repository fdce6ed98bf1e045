"""Fixtures shared by every test package: real chains, real processes, real ports, no mocks.

``chain`` is parametrized over the in-process memory chain and anvil, so a test
that takes it runs on both; the anvil half carries the ``anvil`` marker and is
skipped only when the anvil binary is missing (run ``npm ci``). Never move a
shared anvil's clock: tests that need ``advance_time`` take ``own_chain``,
a chain of their own on each backend.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from farthing.devchain.node import AnvilNode, find_anvil, start_anvil
from farthing.inference.builder import build_tiny_model
from farthing.inference.server import STOP_BOUND_S
from farthing.wallet.chain import Chain, MemoryChain, RpcChain
from farthing.wallet.errors import ChainError
from tests import zygote

# A passphrase good enough for the keystore's checks; tests never print it.
TEST_PASSPHRASE = "test passphrase, not a secret"


# ------------------------------------------------------------------ workers
# The suite runs under pytest-xdist (``-n``/``--dist loadgroup`` in pyproject).
# A test that shares something heavy or stateful goes where that thing lives:
# every test of the session's vLLM on one worker (one server, one model build),
# and every test of a module-scoped fixture (a module's own anvil, a browser,
# a served site) on one worker with the rest of its module, in file order, as
# a serial run would see them.
VLLM_GROUP = "vllm"
SHARED_SCOPES = frozenset({"module", "class", "package"})


def _shares_a_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs[-1].scope in SHARED_SCOPES for defs in info.name2fixturedefs.values() if defs)


def _join_group(item: pytest.Item, group: str) -> None:
    """Mark ``item`` for ``group``; on an xdist worker, also name the group in its id.

    --dist loadgroup schedules by an ``@group`` suffix on the node id. pytest-xdist
    3.8.0 writes that suffix to ``item._nodeid``, which pytest 9 no longer reads
    (a node's id is ``item._id``), so the suffix is written here as pytest 9 keeps it.
    """
    item.add_marker(pytest.mark.xdist_group(group))
    config = item.config
    if hasattr(config, "workerinput") and config.getvalue("loadgroup"):
        try:
            from _pytest.nodeid import NodeId
        except ImportError:
            return  # pytest 8 reads the suffix xdist itself writes to item._nodeid
        item._id = NodeId.parse(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]


# tryfirst: before xdist's own hook, which reads the marks.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[str, str] = {}
    vllm_modules: set[str] = set()
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        names = getattr(item, "fixturenames", ())
        if "vllm" in names or "tiny_model" in names or item.get_closest_marker("vllm"):
            groups[item.nodeid] = VLLM_GROUP
            vllm_modules.add(module)
        elif _shares_a_fixture(item):
            groups[item.nodeid] = module
    for item in items:
        group = groups.get(item.nodeid)
        if group is None:
            continue
        if item.nodeid.split("::", 1)[0] in vllm_modules:
            group = VLLM_GROUP  # its module-scoped fixtures stay with the vLLM tests
        _join_group(item, group)


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
    """Run ``python -m farthing ARGS`` as a real process (forked from ``tests.zygote``)."""
    done = zygote.run_process(
        [sys.executable, "-m", "farthing", *args],
        input=stdin or "",  # a closed stdin when there is nothing to type: no prompt waits
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


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


@pytest.fixture(params=["memory", pytest.param("anvil", marks=pytest.mark.anvil)])
def own_chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    """A chain of this test's own, on each backend: moving its clock must not disturb the shared ones."""
    if request.param == "memory":
        chain: Chain = MemoryChain(accounts=4)
        yield chain
        chain.close()
        return
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        rpc = node.chain()
        yield rpc
        rpc.close()


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
    process = zygote.spawn(
        [
            sys.executable,
            "-m",
            "farthing",
            "chain",
            "dev",
            "--json",
            "--port",
            str(port or free_port()),
        ],
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


# ------------------------------------------------------------------ the real vLLM
# One real vLLM server per session for every suite (inference and agents).

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SERVED_MODEL = "tiny"
VLLM_STARTUP_TIMEOUT_S = 420  # about 30 s here; generous for a loaded CI machine
# The CLI stops vLLM within its own bound (SIGTERM, a grace, SIGKILL); the
# rest is for the CLI's own exit on a loaded machine.
VLLM_STOP_TIMEOUT_S = STOP_BOUND_S + 15


def vllm_missing_reason() -> str | None:
    """Why the real vLLM cannot run here, or None when it can."""
    if not VLLM_PYTHON.exists():
        return f"{VLLM_PYTHON} is missing: run bash scripts/setup_vllm.sh (scripts/test.sh does)"
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without FARTHING_* settings that would leak into a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    env.update(NO_COLOR="1", COLUMNS="200", **extra)
    return env


def group_alive(pgid: int) -> bool:
    """Whether a live process (zombies are dead) is still in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


# ------------------------------------------------------------------ the real vLLM


@pytest.fixture(scope="session")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The tiny random Llama, built once into pytest's cache (the builder skips an up-to-date build)."""
    reason = vllm_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    # Absent (not None) when run with -p no:cacheprovider.
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        out = Path(cache.mkdir("farthing-tiny-model"))
    else:
        out = request.getfixturevalue("tmp_path_factory").mktemp("tiny-model")
    return build_tiny_model(out, python=VLLM_PYTHON)


@dataclass
class VllmProcess:
    """``farthing inference serve`` running vLLM; ``pid`` is vLLM's (and its group's) id."""

    base_url: str
    model: str
    pid: int
    cli: subprocess.Popen[str]
    log: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


def ready_line(process: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    """The CLI's one JSON line, read on a thread so a silent process cannot hang the session."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise RuntimeError(f"{process.args!r} printed no ready line within {timeout_s} s")


@pytest.fixture(scope="session")
def vllm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmProcess]:
    """One real vLLM for the session, started and stopped by the real CLI."""
    logs = tmp_path_factory.mktemp("vllm")
    vllm_log, cli_err = logs / "vllm.log", logs / "cli.stderr"
    argv = [
        sys.executable, "-m", "farthing", "inference", "serve",
        "--model", str(tiny_model), "--served-model-name", SERVED_MODEL,
        "--port", str(free_port()), "--python", str(VLLM_PYTHON), "--device", "cpu",
        "--startup-timeout-s", str(VLLM_STARTUP_TIMEOUT_S), "--log-file", str(vllm_log), "--json",
    ]  # fmt: skip
    with cli_err.open("w") as stderr:
        cli = zygote.spawn(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_env(FARTHING_DATA_DIR=str(logs)),
        )
    pid = None
    try:
        ready = ready_line(cli, VLLM_STARTUP_TIMEOUT_S + 30)
        pid = int(ready["pid"])
        yield VllmProcess(ready["base_url"], ready["model"], pid, cli, vllm_log)
    except RuntimeError:
        tail = cli_err.read_text()[-3000:] if cli_err.exists() else ""
        raise RuntimeError(f"vLLM did not start; the CLI said:\n{tail}") from None
    finally:
        # Ctrl-C, as a user would stop it; the CLI must take vLLM's group down.
        if cli.poll() is None:
            cli.send_signal(signal.SIGINT)
        try:
            code = cli.wait(timeout=VLLM_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            cli.kill()
            code = cli.wait()
        leaked = pid is not None and group_alive(pid)
        if leaked:
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)
        if cli.stdout is not None:
            cli.stdout.close()
        if pid is not None:
            said = cli_err.read_text()[-2000:] if cli_err.exists() else ""
            assert code == 0, (
                f"farthing inference serve exited {code} on Ctrl-C "
                f"(allowed {VLLM_STOP_TIMEOUT_S:g} s); it said:\n{said}"
            )
            assert not leaked, "vLLM's process group outlived farthing inference serve"
