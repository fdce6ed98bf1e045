"""Fixtures for the dashboard's tests: real books, a real uvicorn, Debian's chromium.

``serve`` runs ``create_app`` under uvicorn on 127.0.0.1 in a thread (the same
helper the paywall tests use); ``dashboard`` runs ``farthing dashboard`` as a
real process on a free port and reads its ``--json`` ready line; ``browser`` is Playwright driving
``/usr/bin/chromium`` (never a downloaded browser), shared by a module and
skipped only when chromium or Playwright is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.dashboard import DashboardSettings, create_app, hash_password
from tests import zygote
from tests.conftest import ready_line
from tests.paywall.conftest import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT_S = 180  # a loaded machine starts Python slowly
PASSWORDS = {"ada": "ada's long passphrase", "vic": "vic's long passphrase"}


def users_line() -> str:
    """Ada approves, Vic only views; cheap scrypt keeps the tests fast."""
    return ";".join(
        f"{name} {role} {hash_password(PASSWORDS[name], n=2**10)}"
        for name, role in (("ada", "approver"), ("vic", "viewer"))
    )


@contextmanager
def served(settings: DashboardSettings) -> Iterator[str]:
    """The dashboard at a base URL; uvicorn's lifespan stops its verifier on exit."""
    with serve_in_thread(create_app(settings)) as url:
        yield url


@contextmanager
def dashboard(
    args: list[str], env: dict[str, str]
) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """``farthing dashboard ARGS --port 0 --json``, its ready line, and a client on 127.0.0.1."""
    process = zygote.spawn(
        [sys.executable, "-m", "farthing", "dashboard", *args, "--port", "0", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = ready_line(process, START_TIMEOUT_S)
        with httpx.Client(base_url=ready["url"], timeout=30) as http:
            yield http, ready
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # Root in a container has no user namespace for chromium's sandbox.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()
