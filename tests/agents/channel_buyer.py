"""Paying agent processes for test_channels: buy through batch-settlement channels, write what happened.

Run as ``python channel_buyer.py CONFIG_JSON``. The config names the books'
database URL (shared by every buyer), the chain's RPC URL, the token, the
seller's base URL, the agent and task ids, how many buyers and how many
articles each buys, the channel settings, and a folder. The process imports
once, then forks ``buyers`` child processes (importing in each would take
most of the test's time on a busy 2-core machine); each child opens its own
chain client and database engine, writes ``ready-<name>`` to the folder,
waits (at most ``wait_s``) for ``go`` so that every buyer starts at once,
buys, and writes ``result-<name>.json``: the status, reason and amount of
each purchase, in order. The parent waits for its children and exits 1 if
any failed. The agent's key comes from the environment variable
``FARTHING_TEST_AGENT_KEY`` and is never printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from farthing.agents.books import AgentBooks
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Payer
from farthing.agents.settings import AgentSettings
from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import read_asset


async def buy_all(payer: Payer, config: dict[str, Any]) -> list[list[Any]]:
    results: list[list[Any]] = []
    auth = payer.auth(task_id=config["task_id"], purpose="channel race", expected_buys=50)
    timeout = httpx.Timeout(float(config["request_timeout_s"]))
    async with httpx.AsyncClient(auth=auth, timeout=timeout) as http:
        for n in range(int(config["buys"])):
            response = await http.get(f"{config['seller_url']}/articles/{config['name']}-{n}")
            outcome = outcome_of(response)
            if outcome is None:
                results.append(["none", str(response.status_code), None])
            else:
                amount = None if outcome.amount is None else str(outcome.amount)
                results.append([outcome.status, outcome.reason, amount])
    return results


def wait_for_go(barrier: Path, name: str, wait_s: float) -> None:
    (barrier / f"ready-{name}").touch()
    deadline = time.monotonic() + wait_s
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"buyer {name}: no go within {wait_s} s")
        time.sleep(0.02)


def buyer(config: dict[str, Any], name: str) -> None:
    """One buyer, in a child process: nothing is shared with the parent but the imports."""
    chain = RpcChain(config["rpc_url"], timeout_s=10.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, config["token"])
    database = LedgerDatabase(LedgerSettings(database_url=config["database_url"]))
    books = AgentBooks(database, agent_id=config["agent_id"], asset=asset).ensure()
    settings = AgentSettings(**config["settings"])
    signer = LocalSigner(os.environ["FARTHING_TEST_AGENT_KEY"])
    payer = Payer(signer=signer, chain=chain, asset=asset, books=books, settings=settings)
    folder = Path(config["barrier"])
    wait_for_go(folder, name, float(config["wait_s"]))
    try:
        results = asyncio.run(buy_all(payer, {**config, "name": name}))
    finally:
        database.dispose()
        chain.close()
    (folder / f"result-{name}.json").write_text(json.dumps({"results": results}))


def main() -> None:
    config = json.loads(sys.argv[1])
    children: dict[int, str] = {}
    for n in range(int(config["buyers"])):
        name = f"b{n}"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                buyer(config, name)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - a forked child must end here, whatever it was
                print(f"buyer {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        children[pid] = name
    failed = []
    for pid, name in children.items():
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(name)
    if failed:
        raise SystemExit(f"buyers failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
