"""``VllmServer``: start vLLM, wait until it is healthy, and stop all of it.

vLLM runs as a process group of its own (the API server plus its engine core
process), so stopping it signals the whole group: SIGTERM, then SIGKILL once
the grace (``stop_timeout_s``, or ``stop_grace_s`` when given) has passed, then
at most ``KILL_WAIT_S`` more for the last member to go. So ``stop()`` returns
within ``stop_bound_s`` whatever vLLM does, and reports whether it had to kill
(``StopReport``). ``farthing inference serve`` gives vLLM ``STOP_GRACE_S``, so
it exits within ``STOP_BOUND_S`` of Ctrl-C.

Start-up is bounded: ``wait_ready`` polls ``GET /health`` until it answers
200, the process exits (its log tail becomes the error), or
``startup_timeout_s`` passes. Progress goes to an optional callback so the CLI
can show it and tests can stay quiet.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import httpx

from farthing.inference.command import Accelerator, resolve_device, vllm_command, vllm_env
from farthing.inference.errors import InferenceConfigError, ServerStartError
from farthing.inference.settings import InferenceSettings

__all__ = [
    "KILL_WAIT_S",
    "LOG_TAIL_LINES",
    "STOP_BOUND_S",
    "STOP_GRACE_S",
    "Progress",
    "StopReport",
    "VllmServer",
    "free_port",
    "log_tail",
]

LOG_TAIL_LINES: Final = 25
# What `farthing inference serve` gives vLLM after SIGTERM: the tiny model
# stops in about 2 s; a loaded machine may need more, and past this a SIGKILL
# costs nothing, since vLLM keeps no state worth a clean exit.
STOP_GRACE_S: Final = 10.0
# After SIGKILL only the kernel is left to act (freeing a large address space
# can take seconds on a loaded machine); past this the stop reports survivors.
KILL_WAIT_S: Final = 5.0
STOP_BOUND_S: Final = STOP_GRACE_S + KILL_WAIT_S
_POLL_S: Final = 0.5
_GROUP_POLL_S: Final = 0.05
_HEALTH_TIMEOUT_S: Final = 2.0

Progress = Callable[[float, str], None]  # (seconds waited, last log line)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (vLLM needs a concrete one, not 0)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        with path.open("r", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return ""


@dataclass(frozen=True)
class StopReport:
    """How a stop went: the leader's exit code, whether SIGKILL was needed, and survivors."""

    code: int | None
    killed: bool  # the grace ran out (or the caller asked to kill) and the group got SIGKILL
    survivors: bool  # a live process of the group outlasted SIGKILL and KILL_WAIT_S
    elapsed_s: float


class VllmServer:
    """One vLLM OpenAI-compatible server process group; a context manager."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        log_path: Path | None = None,
        device: Accelerator | None = None,
        python: Path | None = None,
        stop_grace_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.stop_grace_s = settings.stop_timeout_s if stop_grace_s is None else stop_grace_s
        if not self.stop_grace_s > 0:
            raise InferenceConfigError(
                f"the stop grace must be a positive number of seconds, got {self.stop_grace_s}"
            )
        self.python = python or settings.vllm_python()
        if not self.python.exists():
            raise InferenceConfigError(
                f"no Python interpreter at {self.python}; run bash scripts/setup_vllm.sh "
                "(CPU) or pip install vllm (GPU), or pass --python"
            )
        self.device: Accelerator = device or resolve_device(settings, self.python)
        self.port = settings.port or free_port(settings.host)
        self.log_path = log_path or settings.log_dir() / f"vllm-{self.port}.log"
        self.argv = vllm_command(settings, device=self.device, python=self.python, port=self.port)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._killed = False

    def __repr__(self) -> str:
        return f"VllmServer({self.settings.model!r}, device={self.device!r}, port={self.port})"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ending in ``/v1``."""
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        return f"http://{host}:{self.port}"

    @property
    def model_name(self) -> str:
        return self.settings.served_model_name or self.settings.model

    def start(self) -> None:
        """Start the process group (returns at once; see ``wait_ready``)."""
        if self.process is not None:
            raise InferenceConfigError("this server was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=vllm_env(self.settings, device=self.device),
            start_new_session=True,  # its own process group, so stop() reaches every child
        )

    def wait_ready(self, *, progress: Progress | None = None) -> str:
        """Block until ``/health`` answers 200; return the base URL, or raise ``ServerStartError``."""
        if self.process is None:
            raise InferenceConfigError("start() the server before waiting for it")
        started = time.monotonic()
        deadline = started + self.settings.startup_timeout_s
        with httpx.Client(timeout=httpx.Timeout(_HEALTH_TIMEOUT_S)) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"vLLM exited with code {code} before it was ready (log: {self.log_path})",
                        log_tail=log_tail(self.log_path),
                    )
                try:
                    if client.get(f"{self.root_url}/health").status_code == 200:
                        return self.base_url
                except httpx.HTTPError:
                    pass  # not listening yet
                now = time.monotonic()
                if now >= deadline:
                    tail = log_tail(self.log_path)
                    self.stop()
                    raise ServerStartError(
                        f"vLLM was not healthy within {self.settings.startup_timeout_s:g} s "
                        f"(log: {self.log_path})",
                        log_tail=tail,
                    )
                if progress is not None:
                    progress(now - started, log_tail(self.log_path, 1))
                time.sleep(_POLL_S)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def stop_bound_s(self) -> float:
        """The longest ``stop()`` takes: the SIGTERM grace plus the wait after SIGKILL."""
        return self.stop_grace_s + KILL_WAIT_S

    def stop(self) -> StopReport:
        """Stop the whole process group within ``stop_bound_s``: SIGTERM, the grace, SIGKILL.

        The group is waited for, not just the leader: vLLM's API server may be
        gone while its engine core lingers (or the reverse, when the server
        waits on an engine that ignores SIGTERM).
        """
        started = time.monotonic()
        process = self.process
        if process is None:
            return StopReport(code=None, killed=False, survivors=False, elapsed_s=0.0)
        pgid = process.pid
        killed = False
        try:
            if not _group_gone(process):
                _signal_group(pgid, signal.SIGTERM)
                if not _wait_group_gone(process, self.stop_grace_s):
                    killed = True
                    _signal_group(pgid, signal.SIGKILL)
                    _wait_group_gone(process, KILL_WAIT_S)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return StopReport(
            code=process.returncode,
            killed=killed or self._killed,
            survivors=not _group_gone(process),
            elapsed_s=time.monotonic() - started,
        )

    def kill(self) -> None:
        """SIGKILL the whole group now; safe in a signal handler (a second Ctrl-C).

        A ``stop()`` in progress then sees the group gone at its next look.
        """
        if self.process is not None:
            self._killed = True
            _signal_group(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _group_gone(process: subprocess.Popen[bytes]) -> bool:
    """Whether the leader has exited (and is reaped) and no live process is left in its group."""
    return process.poll() is not None and not _group_exists(process.pid)


def _wait_group_gone(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll until the group is gone or ``timeout_s`` passes; whether it went."""
    deadline = time.monotonic() + timeout_s
    while not _group_gone(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_GROUP_POLL_S)
    return True


def _group_exists(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in the group."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
