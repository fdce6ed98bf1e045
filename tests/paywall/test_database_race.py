"""Processes opening one new paywall database at the same moment all succeed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import zygote

OPENERS = 6

_OPEN = """
import sys, time
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.records.store import PaymentStore
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain
start = float(sys.argv[2])
while time.time() < start:
    pass
url = "sqlite:///" + sys.argv[1]
PaymentStore(url).engine.dispose()
ChannelStore(url, domain=ChannelDomain(31337), network="eip155:31337").dispose()
print("ok")
"""


def test_processes_creating_the_tables_at_once_all_start(tmp_path: Path) -> None:
    import time

    database = tmp_path / "paywall.sqlite"
    start = time.time() + 3.0  # every process is up and spinning by then
    processes = [
        zygote.spawn(
            [sys.executable, "-c", _OPEN, str(database), repr(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(OPENERS)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert out.strip() == "ok"
