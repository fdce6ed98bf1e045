"""The spend policy is durable: it survives a restart, and two agent processes cannot overspend it.

Both tests run real agent processes (``spend_worker.py``) against one SQLite
ledger file, on anvil, paying a paywalled blog served by uvicorn in this
process. The agent's wallet holds far more than its total budget, so only the
books can stop it: a half-spent budget must still be half spent after a
restart, and two processes racing for one budget must spend at most it, on
the chain as in the books.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.agents.integrity import ledger_balanced
from farthing.wallet.chain import RpcChain
from tests import zygote
from tests.agents.conftest import PRICE_ATOMIC, World, make_world
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anvil

WORKER = Path(__file__).with_name("spend_worker.py")
SLUGS = [
    "quarter-penny",
    "copper-farthings",
    "withdrawn-1960",
    "collecting-farthings",
    "sourdough",
    "pruning-apples",
]


@pytest.fixture
def served(anvil_chain: RpcChain, tmp_path: Path) -> Iterator[tuple[World, str]]:
    world = make_world(anvil_chain, tmp_path, funds=1_000_000)
    with serve_in_thread(world.app) as url:
        yield world, url
    world.close()


def start_worker(
    world: World, url: str, *, task_id: str, slugs: list[str], start_at: float = 0
) -> subprocess.Popen[str]:
    config = {
        "database_url": world.database_url,
        "rpc_url": world.chain.rpc_url,
        "token": world.asset.address,
        "blog_url": url,
        "agent_id": "agent",
        "task_id": task_id,
        "task_budget": 10_000_000,
        "slugs": slugs,
        "start_at": start_at,
    }
    env = {**os.environ, "FARTHING_TEST_AGENT_KEY": world.agent.private_key.get_secret_value()}
    return zygote.spawn(
        [sys.executable, str(WORKER), json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )


def results_of(process: subprocess.Popen[str]) -> list[tuple[str, str | None]]:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return [tuple(item) for item in json.loads(out.strip().splitlines()[-1])["results"]]  # type: ignore[misc]


def test_a_half_spent_budget_survives_a_restart(served: tuple[World, str]) -> None:
    world, url = served
    world.set_policy(total_budget=4 * PRICE_ATOMIC)
    first = results_of(start_worker(world, url, task_id="before", slugs=SLUGS[:2]))
    assert first == [("paid", None), ("paid", None)]
    # A new process, new objects, the same database: half the budget is gone.
    second = results_of(start_worker(world, url, task_id="after", slugs=SLUGS[2:]))
    assert second == [
        ("paid", None),
        ("paid", None),
        ("not_paid", "exceeds_total_budget"),
        ("not_paid", "exceeds_total_budget"),
    ]
    assert world.posted_total() == 4 * PRICE_ATOMIC
    assert world.token.balance_of(world.merchant) == 4 * PRICE_ATOMIC


def test_two_processes_sharing_one_budget_never_overspend(served: tuple[World, str]) -> None:
    world, url = served
    budget = 5 * PRICE_ATOMIC + PRICE_ATOMIC // 2  # five and a half articles
    world.set_policy(total_budget=budget)
    start_at = time.time() + 4  # both import, connect, then start together
    workers = [
        start_worker(world, url, task_id=f"racer-{n}", slugs=SLUGS, start_at=start_at)
        for n in range(2)
    ]
    outcomes = Counter(status for w in workers for status, _ in results_of(w))
    assert outcomes["paid"] == 5
    assert outcomes["not_paid"] == 7
    assert world.posted_total() == 5 * PRICE_ATOMIC <= budget
    assert world.token.balance_of(world.merchant) == 5 * PRICE_ATOMIC
    assert world.token.balance_of(world.agent.address) == 1_000_000 - 5 * PRICE_ATOMIC
    assert world.open_reservations() == []
    assert ledger_balanced(world.database)
    report = world.reconcile()
    assert report.breaks == ()
