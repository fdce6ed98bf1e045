"""``farthing inference serve`` exits within ``STOP_BOUND_S`` of Ctrl-C and leaves no process of vLLM's group.

The CLI runs as a real process and so does its "vLLM": ``--python`` names a
small shell script that starts the fake vLLM (``fake_vllm.py``) as a real
server. In ``stuck-stop`` mode the fake is a tree that will not stop on
SIGTERM (an engine child that ignores it, and a server that waits for that
engine forever), so only the CLI's SIGKILL after ``STOP_GRACE_S`` can end it.
Process groups are checked in ``/proc``, as the session's vLLM fixture does.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from farthing.inference.server import STOP_BOUND_S, STOP_GRACE_S
from tests.conftest import clean_env, free_port, group_alive, ready_line

FAKE_SCRIPT = Path(__file__).with_name("fake_vllm.py")
READY_TIMEOUT_S = 60.0
# For the CLI's own exit on a loaded machine, after its bounded stop.
EXIT_SLACK_S = 3.0


@dataclass
class Served:
    cli: subprocess.Popen[str]
    pgid: int
    log: Path
    stderr: Path

    def interrupt(self, sig: signal.Signals = signal.SIGINT) -> None:
        self.cli.send_signal(sig)

    def wait_exit(self, timeout_s: float) -> tuple[int | None, float]:
        """The CLI's exit code (None if it was still running at ``timeout_s``) and the time taken."""
        started = time.monotonic()
        try:
            code: int | None = self.cli.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started


Start = Callable[..., Served]


def _fake_python(tmp_path: Path, mode: str) -> Path:
    """An "interpreter" that takes vLLM's argv and starts the fake on its --port instead."""
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done\n'
        f'exec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_SCRIPT))} --port "$port" --mode {mode}\n'
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Start]:
    """Start ``farthing inference serve --json`` on the fake; always leave nothing behind."""
    started: list[Served] = []

    def start(mode: str, *, ignore_sigint: bool = False) -> Served:
        log, stderr = tmp_path / f"vllm-{mode}.log", tmp_path / f"cli-{mode}.stderr"
        argv = [
            sys.executable, "-m", "farthing", "inference", "serve", "--model", "tiny",
            "--python", str(_fake_python(tmp_path, mode)), "--device", "cpu",
            "--port", str(free_port()), "--startup-timeout-s", str(READY_TIMEOUT_S),
            "--log-file", str(log), "--json",
        ]  # fmt: skip
        if ignore_sigint:
            # As a shell without job control starts a background job.
            argv = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
        with stderr.open("w") as err:
            cli = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=clean_env(FARTHING_DATA_DIR=str(tmp_path)),
            )
        try:
            ready = ready_line(cli, READY_TIMEOUT_S)
        except RuntimeError:
            cli.kill()
            cli.wait()
            raise RuntimeError(f"serve did not start: {stderr.read_text()[-2000:]}") from None
        served = Served(cli, int(ready["pid"]), log, stderr)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.cli.poll() is None:
            served.cli.kill()
            served.cli.wait()
        if group_alive(served.pgid):
            os.killpg(served.pgid, signal.SIGKILL)
        if served.cli.stdout is not None:
            served.cli.stdout.close()


def _wait_for(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.05)


def test_ctrl_c_stops_a_tree_that_ignores_sigterm_within_the_bound(serve: Start) -> None:
    served = serve("stuck-stop")
    assert "ignores SIGTERM" in served.log.read_text()
    served.interrupt()
    code, took_s = served.wait_exit(STOP_BOUND_S + EXIT_SLACK_S)
    assert code is not None, f"still running {took_s:.1f} s after Ctrl-C (bound {STOP_BOUND_S:g} s)"
    assert code == 0, served.stderr.read_text()
    assert not group_alive(served.pgid), "a process of vLLM's group outlived the CLI"
    # The grace was given: SIGTERM reached the server, which stopped serving
    # and then hung on its engine until the SIGKILL.
    assert took_s >= STOP_GRACE_S - 0.5
    assert "API server stopped; waiting for the engine core" in served.log.read_text()
    said = served.stderr.read_text()
    assert f"vLLM did not stop within {STOP_GRACE_S:g} s of SIGTERM" in said
    assert "Traceback" not in said


def test_a_second_ctrl_c_kills_at_once(serve: Start) -> None:
    served = serve("stuck-stop")
    served.interrupt()
    _wait_for(served.log, "waiting for the engine core", STOP_GRACE_S / 2)
    served.interrupt()
    code, took_s = served.wait_exit(STOP_GRACE_S)
    assert code == 0, f"exit {code} after {took_s:.1f} s: {served.stderr.read_text()}"
    assert not group_alive(served.pgid), "a process of vLLM's group outlived the CLI"
    said = served.stderr.read_text()
    assert "killed (SIGKILL) on a second interrupt" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_server_that_stops_on_sigterm_stops_cleanly(serve: Start, sig: signal.Signals) -> None:
    served = serve("ok")
    served.interrupt(sig)
    code, took_s = served.wait_exit(STOP_BOUND_S + EXIT_SLACK_S)
    assert code == 0, f"exit {code} after {took_s:.1f} s: {served.stderr.read_text()}"
    assert took_s < STOP_GRACE_S
    assert not group_alive(served.pgid)
    assert "vLLM stopped" in served.stderr.read_text()


def test_ctrl_c_stops_it_when_sigint_was_ignored_at_start(serve: Start) -> None:
    # The shell's SIG_IGN is inherited; the CLI must still take Ctrl-C (or
    # kill -INT) as the stop it means, as uvicorn and anvil do.
    served = serve("ok", ignore_sigint=True)
    served.interrupt()
    code, took_s = served.wait_exit(STOP_BOUND_S + EXIT_SLACK_S)
    assert code == 0, f"exit {code} after {took_s:.1f} s: {served.stderr.read_text()}"
    assert not group_alive(served.pgid)
