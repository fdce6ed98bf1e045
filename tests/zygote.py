"""Start Python processes for the tests without paying for their imports each time.

A test that runs ``python -m farthing ...`` or one of the suite's worker
scripts spends most of its time before the program starts: a fresh
interpreter imports web3, eth-account (whose keyfile module builds py_ecc's
BLS tables), SQLAlchemy and pydantic, about 1.5 s of CPU a process on the test
machine, for each of the suite's hundreds of processes.

The zygote is one long-lived process per test process. It imports the
*third-party* modules the command line uses (found by a probe child that
imports every Farthing module and reports ``sys.modules``), then waits on a Unix
socket. Each program is a child forked from it, so it is still a separate
process with its own pid, argv, environment, working directory, stdin, stdout,
stderr, session and exit status (a signal that kills it is reported as
``-N``, as ``subprocess`` does), and a crash, ``os._exit`` or ``kill -9`` in it
touches nothing else. What the child does not inherit is anything of
Farthing's or of the tests': no ``farthing`` or ``tests`` module is imported
in the zygote, so each program imports that code fresh and reads its
environment (crash points, consoles, settings) as a new process would.

``spawn`` is ``subprocess.Popen`` for ``[sys.executable, "-m", module, ...]``
and ``[sys.executable, script, ...]``; anything else, and everything when
``FARTHING_TEST_FORK=0``, goes to ``subprocess.Popen`` itself.

Run as a script, this file is the zygote: ``python tests/zygote.py SOCKET``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Self

__all__ = ["ForkedProcess", "fork_enabled", "run_process", "spawn"]

_REQUEST_BYTES_MAX = 4 << 20
_START_TIMEOUT_S = 120.0
_READY = b"ready\n"


def fork_enabled() -> bool:
    return os.environ.get("FARTHING_TEST_FORK", "1") != "0" and hasattr(socket, "send_fds")


# --- the test process's side ------------------------------------------------


class _Zygote:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="farthing-zygote-")
        self.path = os.path.join(self.dir, "zygote.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
        # Its own complaints only; every child has its own stderr.
        self._log = open(os.path.join(self.dir, "zygote.log"), "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line != _READY:
            self._proc.kill()
            raise RuntimeError(f"the test zygote did not start (it said {line!r})")
        atexit.register(self.close)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
        for name in ("zygote.sock", "zygote.log"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.dir, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)


_LOCK = threading.Lock()
_STARTED: dict[int, _Zygote] = {}


def _zygote() -> _Zygote:
    with _LOCK:
        found = _STARTED.get(os.getpid())
        if found is None:
            found = _STARTED[os.getpid()] = _Zygote()
        return found


def _program(args: list[str], cwd: Any) -> dict[str, Any] | None:
    """What to run for ``[python, ...]`` in ``cwd``, or None when only a fresh interpreter will do."""
    if len(args) < 2 or args[0] != sys.executable:
        return None
    if args[1] == "-m" and len(args) >= 3:
        return {"module": args[2], "args": args[3:]}
    if args[1].startswith("-"):
        return None
    return {"path": str(Path(cwd or os.getcwd(), args[1]).resolve()), "args": args[2:]}


def spawn(args: list[str], **kwargs: Any) -> Any:
    """``subprocess.Popen(args, **kwargs)``, forked from the zygote where it can be."""
    program = _program([str(a) for a in args], kwargs.get("cwd"))
    if program is None or not fork_enabled() or set(kwargs) - _SUPPORTED:
        return subprocess.Popen(args, **kwargs)
    return ForkedProcess([str(a) for a in args], program, **kwargs)


_SUPPORTED = frozenset(
    {"stdin", "stdout", "stderr", "text", "env", "cwd", "start_new_session", "bufsize"}
)


class ForkedProcess:
    """The part of ``subprocess.Popen`` the tests use, for a child of the zygote."""

    def __init__(
        self,
        args: list[str],
        program: dict[str, Any],
        *,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        text: bool = False,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        start_new_session: bool = False,
        bufsize: int = -1,
    ) -> None:
        self.args = args
        self._text = text
        self.returncode: int | None = None
        self.stdin: IO[Any] | None = None
        self.stdout: IO[Any] | None = None
        self.stderr: IO[Any] | None = None
        self._status = b""
        self._readers: list[threading.Thread] = []
        self._output: dict[str, list[Any]] = {}
        close_after: list[int] = []

        def child_end(spec: Any, default: int, *, reading: bool) -> tuple[int, int | None]:
            if spec is None:
                return default, None
            if spec == subprocess.PIPE:
                r, w = os.pipe()
                mine, theirs = (w, r) if reading else (r, w)
                close_after.append(theirs)
                return theirs, mine
            if spec == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR)
                close_after.append(fd)
                return fd, None
            if isinstance(spec, int):
                return spec, None
            return spec.fileno(), None

        mode = "" if text else "b"
        fd_in, mine_in = child_end(stdin, 0, reading=True)
        fd_out, mine_out = child_end(stdout, 1, reading=False)
        if stderr == subprocess.STDOUT:
            fd_err, mine_err = fd_out, None
        else:
            fd_err, mine_err = child_end(stderr, 2, reading=False)
        sent = [fd_in, fd_out, fd_err]  # the child's 0, 1, 2
        if mine_in is not None:
            self.stdin = os.fdopen(mine_in, "w" + mode, bufsize)
        if mine_out is not None:
            self.stdout = os.fdopen(mine_out, "r" + mode, bufsize)
        if mine_err is not None:
            self.stderr = os.fdopen(mine_err, "r" + mode, bufsize)
        request = {
            **program,
            "env": dict(os.environ if env is None else env),
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "session": start_new_session,
        }
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(_zygote().path)
            socket.send_fds(self._conn, [json.dumps(request).encode()], sent)
            self._conn.shutdown(socket.SHUT_WR)
        finally:
            for fd in close_after:
                os.close(fd)
        self.pid = self._read_line("pid", _START_TIMEOUT_S)

    def _read_line(self, key: str, timeout_s: float | None) -> int:
        while True:
            for line in self._status.splitlines(keepends=True):
                if line.endswith(b"\n") and line.startswith(key.encode() + b":"):
                    return int(line.split(b":", 1)[1])
            ready, _, _ = select.select([self._conn], [], [], timeout_s)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout_s or 0.0)
            chunk = self._conn.recv(4096)
            if not chunk:
                if key == "exit":  # the zygote itself died; the child is lost with it
                    return -int(signal.SIGKILL)
                raise RuntimeError("the test zygote closed before it said the child's pid")
            self._status += chunk

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._finish(self._read_line("exit", 0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._finish(self._read_line("exit", timeout))
        assert self.returncode is not None
        return self.returncode

    def _finish(self, code: int) -> None:
        self.returncode = code
        self._conn.close()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        if not self._readers:
            for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
                if stream is not None:
                    into = self._output.setdefault(name, [])
                    thread = threading.Thread(target=_drain, args=(stream, into), daemon=True)
                    thread.start()
                    self._readers.append(thread)
            if self.stdin is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    if input:
                        self.stdin.write(input)
                    self.stdin.close()
        self.wait(timeout)
        for thread in self._readers:
            thread.join(timeout)
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        empty: Any = "" if self._text else b""
        results = []
        for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
            if stream is None:
                results.append(None)
            else:
                parts = self._output.get(name, [])
                results.append(parts[0] if parts else empty)
        return results[0], results[1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.wait()


def _drain(stream: IO[Any], into: list[Any]) -> None:
    """Read a pipe to its end and close it, as ``Popen.communicate`` does."""
    with contextlib.suppress(ValueError, OSError), stream:
        into.append(stream.read())


def run_process(
    args: list[str],
    *,
    input: Any = None,
    capture_output: bool = False,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run``, its process started by ``spawn``."""
    if capture_output:
        stdout = stderr = subprocess.PIPE
    if input is not None:
        stdin = subprocess.PIPE
    process = spawn(args, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs)
    try:
        out, err = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    done = subprocess.CompletedProcess(args, int(process.returncode), out, err)
    if check:
        done.check_returncode()
    return done


# --- the zygote itself ------------------------------------------------------


def _ours(name: str) -> bool:
    return name.split(".")[0] in {"farthing", "tests", "__main__", "conftest"}


def _probe_modules() -> list[str]:
    """The modules a process that imports all of Farthing holds, in import order, but ours."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            import importlib
            import pkgutil

            # Every module of ours, so the servers' and scripts' libraries are loaded too.
            tops = ("", ".wallet", ".ledger", ".paywall", ".agents", ".inference", ".jobs")
            for top in (f"farthing{name}" for name in (*tops, ".dashboard")):
                package = importlib.import_module(top)
                for found in pkgutil.walk_packages(package.__path__, f"{top}."):
                    if found.name.rsplit(".", 1)[-1] == "__main__":  # that one runs the CLI
                        continue
                    with contextlib.suppress(Exception):
                        importlib.import_module(found.name)
            with os.fdopen(write_fd, "w") as out:
                out.write("\n".join(name for name in list(sys.modules) if not _ours(name)))
        except BaseException:  # noqa: BLE001 (then it preloads nothing; programs still run)
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as stream:
        names = stream.read().split("\n")
    os.waitpid(pid, 0)
    return [name for name in names if name]


def _preload(names: list[str]) -> None:
    import importlib

    for name in names:
        if name not in sys.modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)


def _become(request: dict[str, Any], fds: list[int], base_path: list[str]) -> int:
    """In the forked child: become the requested program and return its exit status."""
    import random
    import runpy
    import traceback

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    if request["session"]:
        os.setsid()
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    random.seed()  # not the sequence every child of the zygote would share
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    first = os.path.dirname(request["path"]) if "path" in request else request["cwd"]
    sys.path[:] = [first, *extra, *base_path]
    try:
        if "path" in request:
            sys.argv = [request["path"], *request["args"]]
            runpy.run_path(request["path"], run_name="__main__")
        else:
            sys.argv = [request["module"], *request["args"]]
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 (what an uncaught error does in any interpreter)
        traceback.print_exc()
        code = 1
    return code


def serve(path: str) -> None:
    # Started as a script, sys.path[0] is tests/; the programs decide their own.
    own_pythonpath = {p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    base_path = [p for p in sys.path[1:] if p not in own_pythonpath]
    sys.path[0] = os.getcwd()
    _preload(_probe_modules())
    # What the zygote holds is never garbage; kept out of every child's collections,
    # it is neither traversed nor copied on write by them.
    gc.collect()
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    children: dict[int, socket.socket] = {}
    parent = os.getppid()
    sys.stdout.buffer.write(_READY)
    sys.stdout.flush()
    while True:
        events = selector.select(timeout=5.0)
        if os.getppid() != parent:  # the test process is gone
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        for key, _ in events:
            if key.data == "child":
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
                continue
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, _REQUEST_BYTES_MAX, 3)
            while more := conn.recv(_REQUEST_BYTES_MAX):
                message += more
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                selector.close()
                for sock in (listener, conn, *children.values()):
                    sock.close()
                os.close(wake_r)
                os.close(wake_w)
                # Leave as the interpreter would: atexit handlers, threads joined, streams flushed.
                raise SystemExit(_become(request, fds, base_path))
            for fd in fds:
                os.close(fd)
            children[pid] = conn
            with contextlib.suppress(OSError):
                conn.sendall(f"pid:{pid}\n".encode())
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            done = children.pop(pid, None)
            if done is not None:
                with contextlib.suppress(OSError):
                    done.sendall(f"exit:{os.waitstatus_to_exitcode(status)}\n".encode())
                done.close()


if __name__ == "__main__":
    serve(sys.argv[1])
