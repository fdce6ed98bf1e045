"""Every crash point in the code is killed at by a test and documented, and the hook itself kills.

The source of every installed package is scanned for ``crash_point("…")``
calls; each name must be one the crash tests parametrize over and must
appear in ``docs/reliability.md``, so a new point cannot be added unproved.
The hook is checked on a real child process: armed, it dies by SIGKILL at
the named point and nowhere else; unarmed, it runs to the end.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests import zygote
from tests.faults.harness import REPO, SIGKILLED
from tests.faults.test_agent_crash import POINTS as AGENT_POINTS
from tests.faults.test_channel_crash import POINTS as CHANNEL_POINTS
from tests.faults.test_paywall_crash import POINTS as PAYWALL_POINTS
from tests.faults.test_upto_crash import POINTS as UPTO_POINTS

PACKAGES = ("agents", "farthing", "inference", "ledger", "paywall", "wallet")
CALL = re.compile(r"""crash_point\(\s*["']([a-z0-9_.]+)["']\s*\)""")


def points_in_code() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name != "faults.py":  # the hook's own docstring shows an example
                found.update(CALL.findall(path.read_text()))
    return found


def test_every_crash_point_is_tested_and_documented() -> None:
    in_code = points_in_code()
    tested = set(AGENT_POINTS) | set(PAYWALL_POINTS) | set(CHANNEL_POINTS) | set(UPTO_POINTS)
    assert in_code == tested, {"untested": in_code - tested, "not in code": tested - in_code}
    doc = (REPO / "docs" / "reliability.md").read_text()
    assert sorted(p for p in in_code if f"`{p}`" not in doc) == []


def run_child(crash_at: str | None) -> subprocess.CompletedProcess[str]:
    script = (
        "from farthing.faults import crash_point\n"
        "print('before', flush=True)\n"
        "crash_point('test.first')\n"
        "print('between', flush=True)\n"
        "crash_point('test.second')\n"
        "print('after', flush=True)\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    if crash_at is not None:
        env["FARTHING_CRASH_AT"] = crash_at
    return zygote.run_process(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(REPO),
        timeout=60,
        check=False,
    )


def test_the_hook_kills_at_the_named_point_only() -> None:
    unarmed = run_child(None)
    assert (unarmed.returncode, unarmed.stdout.split()) == (0, ["before", "between", "after"])
    second = run_child("test.second")
    assert (second.returncode, second.stdout.split()) == (SIGKILLED, ["before", "between"])
    either = run_child(" test.nowhere , test.first ")
    assert (either.returncode, either.stdout.split()) == (SIGKILLED, ["before"])
