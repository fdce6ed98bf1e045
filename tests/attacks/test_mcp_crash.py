"""A ``farthing paywall serve`` (``mcp = true``) killed with SIGKILL between verifying an MCP call's payment and settling it loses nothing and charges nothing twice: after a restart the same ``_meta["x402/payment"]`` delivers the page and settles once, and a replay after that is refused.

Tried from outside and kept as a test: the MCP call runs through the same
paid path as HTTP, so its crash points (``paywall.after_verify``,
``paywall.after_handler``: the page produced, nothing settled yet) are the
edge's. Real processes on anvil: the test site on uvicorn as the upstream,
``farthing paywall serve`` armed with ``FARTHING_CRASH_AT`` and a one-second
claim lease, then a second ``serve`` on the same database; an MCP
``ClientSession`` pays; the payer's balance is read on chain.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import zygote
from tests.conftest import cli_env, free_port
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, chain_env, inner_app, serve_in_thread
from tests.paywall.mcp.conftest import call_tool, payment_for, text_of
from tests.paywall.test_serve_origin import Served, start_serve, write_config

__all__ = ["chain_env"]

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_in_thread(inner_app()) as url:
        yield url


def _armed(config: Path, folder: Path, port: int, point: str) -> subprocess.Popen[str]:
    process: subprocess.Popen[str] = zygote.spawn(
        [
            sys.executable, "-m", "farthing", "paywall", "serve", "--json",
            "--config", str(config), "--port", str(port), "--claim-lease-s", "1",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**cli_env(folder / "data"), "FARTHING_CRASH_AT": point},
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline(), process.communicate(10)
    return process


def _fetch(url: str, meta: dict[str, Any] | None = None) -> Any:
    return asyncio.run(call_tool(url, "fetch", {"path": "/articles/crash"}, meta))


@pytest.mark.parametrize("point", ["paywall.after_verify", "paywall.after_handler"])
def test_a_crash_between_verify_and_settle_loses_nothing_and_doubles_nothing(
    chain_env: ChainEnv, upstream: str, tmp_path: Path, point: str
) -> None:
    config = write_config(chain_env, tmp_path, upstream, public_url=None)
    config.write_text("mcp = true\n" + config.read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    payer = chain_env.new_payer()
    before = chain_env.token.balance_of(payer.address)

    first = _armed(config, tmp_path, port, point)
    try:
        meta = payment_for(_fetch(url).structuredContent, payer)
        with pytest.raises(BaseException):  # noqa: B017 (the server dies mid-call)
            _fetch(url, meta)
        assert first.wait(timeout=30) == -9
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=10)
    assert chain_env.token.balance_of(payer.address) == before

    second: Served = start_serve(config, tmp_path, port, "--claim-lease-s", "1")
    try:
        time.sleep(1.5)  # the dead process's claim lease runs out
        paid = _fetch(url, meta)
        assert paid.isError is False, text_of(paid)
        assert text_of(paid).count("PAID-PART") == 2
        replayed = _fetch(url, meta)
        assert replayed.isError is True and "PAID-PART" not in text_of(replayed)
    finally:
        second.stop()
    assert chain_env.token.balance_of(payer.address) == before - PRICE_ATOMIC
