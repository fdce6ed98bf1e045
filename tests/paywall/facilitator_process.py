"""Start ``farthing facilitator serve`` as a real process for the caller-rule tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import zygote
from tests.conftest import cli_env, ready_line

API_KEY = "an-api-key-for-tests-only-0123456789"


def private_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path


@dataclass
class FacilitatorProcess:
    url: str
    info: dict[str, Any]
    process: subprocess.Popen[str]


def serve_args(rpc_url: str, key_file: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "farthing", "facilitator", "serve", "--json",
        "--rpc-url", rpc_url, "--key-file", str(key_file), "--port", "0", *extra,
    ]  # fmt: skip


@contextmanager
def running_facilitator(
    rpc_url: str, key_file: Path, data_dir: Path, *extra: str
) -> Iterator[FacilitatorProcess]:
    """A facilitator process that printed its ready line; stopped on exit."""
    process = zygote.spawn(
        serve_args(rpc_url, key_file, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )
    try:
        info = ready_line(process, 60)
        yield FacilitatorProcess(str(info["url"]), info, process)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def refused_start(rpc_url: str, key_file: Path, data_dir: Path, *extra: str) -> tuple[int, str]:
    """Start a facilitator that must refuse to: its exit code and stderr (it may not serve)."""
    process = zygote.spawn(
        serve_args(rpc_url, key_file, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the facilitator started and served: {out!r}") from None
    return process.returncode, err
