"""The docs' walked blocks run as written, top to bottom, on a fresh data dir and a dev chain.

README.md's first tour and docs/paywall.md's blogger section (each fence marked
``<!-- walked by tests/test_docs_walk.py -->``) are read out of the files and
run in order as real processes: each ``farthing`` line as ``python -m
farthing`` that must exit 0; the lines the doc runs in another terminal
(``farthing chain dev``, ``farthing paywall serve``, ``python -m http.server``)
in the background until their ``--json`` line or their port answers, stopped at
the end; ``export`` honoured, ``cd`` followed, any other shell line run by bash.
``python quickstart.py URL`` runs docs/agents.md's quickstart block, which must
print ``200 paid``, and ``farthing paywall revenue --json`` in the site's folder
must then count that sale.
"""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import zygote
from tests.agents.test_quickstart_doc import quickstart_block
from tests.conftest import CliResult, anvil_missing_reason, cli_env, free_port, ready_line

pytestmark = pytest.mark.anvil

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- walked by tests/test_docs_walk.py -->"
TIMEOUT_S = 300  # generous: the machine is shared
# Lines that are for the reader's set-up, not for the walk.
SKIPPED = ("source ", "npm ci")


def walked_blocks(path: Path) -> list[list[str]]:
    """Each marked fence of PATH as its lines, continuation lines joined."""
    text = path.read_text()
    blocks = []
    for found in re.finditer(re.escape(MARKER) + r"\n```[a-z]*\n(.*?)```", text, re.DOTALL):
        lines: list[str] = []
        pending = ""
        for raw in found.group(1).splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            lines.append(pending + raw)
            pending = ""
        blocks.append(lines)
    assert blocks, f"{path.name} has no block marked {MARKER}"
    return blocks


def substitutions(chain: int, site: int, paywall: int) -> list[tuple[str, str]]:
    """The doc's fixed ports, which may be busy under parallel tests, to free ones.

    This is the whole table: nothing else in the docs is changed by the walk.
    """
    return [
        ("farthing chain dev", f"farthing chain dev --port {chain}"),
        ("127.0.0.1:8545", f"127.0.0.1:{chain}"),
        ("http.server 4000", f"http.server {site}"),
        ("127.0.0.1:4000", f"127.0.0.1:{site}"),
        ("--port 4021", f"--port {paywall}"),
        ("127.0.0.1:4021", f"127.0.0.1:{paywall}"),
    ]


class Walk:
    """A reader at a shell: a working folder, an environment, background terminals."""

    def __init__(self, home: Path, env: dict[str, str], table: list[tuple[str, str]]) -> None:
        self.cwd = home
        self.env = env
        self.table = table
        self.logs = home.parent / "logs"
        self.logs.mkdir()
        self.background: list[subprocess.Popen[str]] = []
        self.ready: dict[str, dict[str, Any]] = {}
        self.quickstart_output = ""
        self.outputs: list[str] = []

    def run(self, line: str) -> None:
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith(SKIPPED):
            return
        for doc_text, value in self.table:
            stripped = stripped.replace(doc_text, value)
        argv = shlex.split(stripped, comments=True)
        if argv[0] == "export":
            name, _, value = argv[1].partition("=")
            self.env[name] = value
        elif argv[0] == "cd":
            self.cwd = self.cwd / argv[1]
        elif argv[0] == "farthing" and argv[1:3] in (["chain", "dev"], ["paywall", "serve"]):
            process = self._start([sys.executable, "-m", "farthing", *argv[1:], "--json"])
            self.ready[argv[1]] = ready_line(process, TIMEOUT_S)
        elif argv[0] == "farthing":
            result = self.farthing(argv[1:])
            assert result.code == 0, f"{stripped}: {result.stderr}"
            self.outputs.append(result.stdout)
        elif argv[:3] == ["python", "-m", "http.server"]:
            self._start([sys.executable, *argv[1:]])
            _wait_for_port(int(argv[3]))
        elif argv[:2] == ["python", "quickstart.py"]:
            (self.cwd / "quickstart.py").write_text(quickstart_block())
            done = zygote.run_process(
                [sys.executable, *argv[1:]], cwd=self.cwd, env=self.env, capture_output=True,
                text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"{stripped}: {done.stderr}"
            self.quickstart_output = done.stdout
        else:
            done = zygote.run_process(
                ["bash", "-c", stripped], cwd=self.cwd, env=self.env, capture_output=True,
                text=True, timeout=TIMEOUT_S, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"{stripped}: {done.stderr}"

    def farthing(self, args: list[str]) -> CliResult:
        """``python -m farthing ARGS`` in the walk's folder, as a real process."""
        done = zygote.run_process(
            [sys.executable, "-m", "farthing", *args], cwd=self.cwd, env=self.env,
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S,
            check=False,
        )  # fmt: skip
        return CliResult(done.returncode, done.stdout, done.stderr)

    def _start(self, argv: list[str]) -> subprocess.Popen[str]:
        log = self.logs / f"{len(self.background)}.stderr"
        with log.open("w") as stderr:
            process = zygote.spawn(
                argv, cwd=self.cwd, env=dict(self.env), stdout=subprocess.PIPE, stderr=stderr,
                stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        self.background.append(process)
        return process

    def stop(self) -> None:
        """Stop every background terminal, last first, as Ctrl-C would."""
        for process in reversed(self.background):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port} within {TIMEOUT_S} s")


@contextmanager
def walking(tmp_path: Path) -> Iterator[Walk]:
    home = tmp_path / "home"
    home.mkdir()
    table = substitutions(free_port(), free_port(), free_port())
    walk = Walk(home, cli_env(tmp_path / "data"), table)
    try:
        yield walk
    finally:
        walk.stop()


def test_the_first_tour_and_the_blogger_section_run_as_written(tmp_path: Path) -> None:
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    blogger = walked_blocks(ROOT / "docs" / "paywall.md")
    with walking(tmp_path) as walk:
        for block in walked_blocks(ROOT / "README.md") + blogger:
            for line in block:
                walk.run(line)
        # The token address the blogger section prints is the one a fresh dev chain deploys.
        assert walk.ready["chain"]["token"]["address"] in "\n".join(blogger[0])
        assert walk.quickstart_output.startswith("200 paid "), walk.quickstart_output
        # `agent fetch` after the purchase reads the article by signing in: no second sale.
        assert "Withdrawn in 1960." in walk.outputs[-2]
        report = walk.farthing(["paywall", "revenue", "--json"])
        assert report.code == 0, report.stderr
        revenue = report.json()
        assert revenue["database"].endswith(str(walk.cwd / "paywall.sqlite"))
        assert revenue["total"]["payments"] == 1
        assert [row["key"] for row in revenue["articles"]] == ["/posts/farthing.html"]
