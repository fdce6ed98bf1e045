"""A paying agent process for test_durability: buy articles until told to stop, print what happened.

Run as ``python spend_worker.py CONFIG_JSON``. The config names the books'
database URL, the chain's RPC URL, the token, the blog's URL, the agent id,
the task id and budget, which articles to buy and when to start (so that
several workers start together). The agent's key comes from the environment
variable ``FARTHING_TEST_AGENT_KEY`` and is never printed. It prints one JSON
object: the status and reason of each purchase, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from farthing.agents.books import AgentBooks
from farthing.agents.client import async_paying_client
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Payer
from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import read_asset


async def buy_all(payer: Payer, config: dict[str, object]) -> list[list[str | None]]:
    results: list[list[str | None]] = []
    async with async_paying_client(
        payer, task_id=str(config["task_id"]), purpose="durability"
    ) as http:
        for slug in config["slugs"]:  # type: ignore[attr-defined]
            response = await http.get(f"{config['blog_url']}/posts/{slug}")
            outcome = outcome_of(response)
            results.append([outcome.status, outcome.reason] if outcome else ["none", None])
    return results


def main() -> None:
    config = json.loads(sys.argv[1])
    chain = RpcChain(config["rpc_url"], timeout_s=5.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, config["token"])
    database = LedgerDatabase(LedgerSettings(database_url=config["database_url"]))
    books = AgentBooks(database, agent_id=config["agent_id"], asset=asset).ensure()
    books.start_task(config["task_id"], int(config["task_budget"]))
    signer = LocalSigner(os.environ["FARTHING_TEST_AGENT_KEY"])
    payer = Payer(signer=signer, chain=chain, asset=asset, books=books)
    time.sleep(max(0.0, float(config.get("start_at", 0)) - time.time()))
    results = asyncio.run(buy_all(payer, config))
    database.dispose()
    chain.close()
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
