"""``VllmServer`` never waits past its start-up timeout and never leaves a process behind.

The "interpreter" here is a real executable standing in for vLLM's (a shell
script that exits, or that starts a child and never listens), so the
process-group handling is exercised for real and in a second. The real vLLM
is started by the ``vllm`` session fixture through ``farthing inference serve``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from farthing.inference import InferenceSettings, ServerStartError, VllmServer
from farthing.inference.server import log_tail
from tests.conftest import group_alive


def _python(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def settings(**overrides: object) -> InferenceSettings:
    values: dict[str, object] = {"model": "tiny", "startup_timeout_s": 2.0, "stop_timeout_s": 2.0}
    values.update(overrides)
    return InferenceSettings(**values)  # type: ignore[arg-type]


def test_a_server_that_exits_reports_its_log(tmp_path: Path) -> None:
    python = _python(tmp_path, 'echo "RuntimeError: no such model: $4"; exit 3')
    server = VllmServer(settings(), log_path=tmp_path / "vllm.log", device="cpu", python=python)
    server.start()
    with pytest.raises(ServerStartError, match="exited with code 3") as caught:
        server.wait_ready()
    assert "no such model: tiny" in caught.value.log_tail
    server.stop()


def test_a_server_that_never_gets_healthy_is_stopped_with_its_children(tmp_path: Path) -> None:
    # The "server" starts a child that ignores SIGTERM, as a wedged engine might.
    python = _python(
        tmp_path, "sh -c 'trap \"\" TERM; sleep 600' & echo loading weights; sleep 600"
    )
    server = VllmServer(
        settings(startup_timeout_s=1.5, stop_timeout_s=1.0),
        log_path=tmp_path / "vllm.log",
        device="cpu",
        python=python,
    )
    seen: list[float] = []
    started = time.monotonic()
    server.start()
    assert server.process is not None
    pgid = server.process.pid
    with pytest.raises(ServerStartError, match="not healthy within 1.5 s") as caught:
        server.wait_ready(progress=lambda waited, line: seen.append(waited))
    assert time.monotonic() - started < 10
    assert "loading weights" in caught.value.log_tail
    assert seen, "no progress was reported"
    assert not group_alive(pgid), "a process of the server's group survived"


def test_a_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    from farthing.inference import InferenceConfigError

    with pytest.raises(InferenceConfigError, match="setup_vllm.sh"):
        VllmServer(settings(), log_path=tmp_path / "log", device="cpu", python=tmp_path / "nope")


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 2) == "line 98\nline 99"
    assert log_tail(tmp_path / "missing") == ""
