"""Start and stop ``lease_server.py`` paywall processes for the multi-process tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import zygote

SERVER = Path(__file__).with_name("lease_server.py")


@dataclass
class PaywallProcess:
    url: str
    process: subprocess.Popen[str]

    def wait_killed(self, timeout_s: float = 30.0) -> int:
        """Wait for the process to end on its own (a crash point); return its exit code."""
        self.process.wait(timeout=timeout_s)
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def start_paywall(config: dict[str, Any], *, crash_at: str | None = None) -> PaywallProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    if crash_at:
        env["FARTHING_CRASH_AT"] = crash_at
    process = zygote.spawn(
        [sys.executable, str(SERVER), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"paywall did not start: {process.communicate(timeout=10)[1]}")
    return PaywallProcess(json.loads(line)["url"], process)


@contextmanager
def running_paywall(
    config: dict[str, Any], *, crash_at: str | None = None
) -> Iterator[PaywallProcess]:
    server = start_paywall(config, crash_at=crash_at)
    try:
        yield server
    finally:
        server.stop()


def copy_after_delivery(client: Any, url: str, header: str, *, wait_s: float = 10.0) -> Any:
    """A copy of ``header``'s request once its first delivery is recorded (bounded wait).

    A real server marks a payment delivered just after the answer went out; a
    copy that beats that write is told to retry (503 ``payment_in_progress``),
    never served, and this keeps asking until the answer is final.
    """
    deadline = time.monotonic() + wait_s
    while True:
        answer = client.get(url, headers={"PAYMENT-SIGNATURE": header})
        busy = answer.status_code == 503 and answer.json().get("error") == "payment_in_progress"
        if not busy or time.monotonic() > deadline:
            return answer
        assert "paid-data" not in answer.text
        time.sleep(0.1)
