"""A paying agent process for the channel crash tests: buy one URL a few times through a channel.

Run as ``python channel_pay.py CONFIG_JSON``. The config is ``pay_once.py``'s
(the books' database URL, the RPC URL, the token, the URL, the agent and task
ids, the task budget, the marker, the read timeout) plus ``buys`` and the
channel settings: ``channel_lease_s`` (short, so a dead process's lease runs
out within the test) and ``channel_deposit_multiple``. Each purchase is made
as ``pay_once.py`` makes one (the agents' async paying client, and the chain
asked after a transport error) and printed at once as one JSON line, so the
lines before a crash survive it. The agent's key comes from
``FARTHING_TEST_AGENT_KEY`` and is never printed; ``FARTHING_CRASH_AT`` arms a
crash point.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from farthing.agents.books import AgentBooks
from farthing.agents.payer import Payer
from farthing.agents.settings import AgentSettings
from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import read_asset
from tests.faults.pay_once import buy


def channel_settings(config: dict[str, Any]) -> AgentSettings:
    """The agent's settings in the channel crash tests (also used in the test's own process)."""
    return AgentSettings(
        settle_retry_delay_s=0.2,
        read_timeout_s=float(config["timeout_s"]),
        channel_lease_s=float(config["channel_lease_s"]),
        channel_wait_s=0,
        channel_slots_max=1,  # one channel per seller: a second deposit would show
        channel_deposit_multiple=int(config["channel_deposit_multiple"]),
    )


async def buy_many(payer: Payer, config: dict[str, Any]) -> None:
    for _ in range(int(config["buys"])):
        print(json.dumps(await buy(payer, config)), flush=True)


def main() -> None:
    config = json.loads(sys.argv[1])
    chain = RpcChain(config["rpc_url"], timeout_s=5.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, config["token"])
    database = LedgerDatabase(LedgerSettings(database_url=config["database_url"]))
    books = AgentBooks(database, agent_id=config["agent_id"], asset=asset).ensure()
    books.start_task(config["task_id"], int(config["task_budget"]))
    payer = Payer(
        signer=LocalSigner(os.environ["FARTHING_TEST_AGENT_KEY"]),
        chain=chain,
        asset=asset,
        books=books,
        settings=channel_settings(config),
    )
    try:
        asyncio.run(buy_many(payer, config))
    finally:
        database.dispose()
        chain.close()


if __name__ == "__main__":
    main()
