"""A paying agent process for the crash-point suite: buy one URL once, print what happened.

Run as ``python pay_once.py CONFIG_JSON``. The config names the books'
database URL, the chain's RPC URL, the token, the URL to buy, the agent id,
the task id and its budget, and the marker whose presence in the body means
the paid content arrived. The agent's key comes from ``FARTHING_TEST_AGENT_KEY``
and is never printed. A test arms a crash point with ``FARTHING_CRASH_AT``; the
process then dies by SIGKILL there and prints nothing.

It pays the way an agent's fetch tool does: an async paying client, and after
a transport error (the seller died mid-request) ``asettle_after_error``, which
asks the chain what became of the payment. It prints one JSON line:
``{"status_code", "outcome", "reason", "payment_id", "transaction",
"content", "error"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx

from farthing.agents.books import AgentBooks
from farthing.agents.client import asettle_after_error, async_paying_client
from farthing.agents.outcome import PaymentOutcome, outcome_of
from farthing.agents.payer import Payer
from farthing.agents.settings import AgentSettings
from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.ledger.ids import format_transfer_id
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import read_asset


async def buy(
    payer: Payer, config: dict[str, Any], transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Any]:
    status_code: int | None = None
    content = False
    error: str | None = None
    outcome: PaymentOutcome | None
    async with async_paying_client(
        payer, task_id=str(config["task_id"]), purpose="crash-point suite", transport=transport
    ) as http:
        try:
            response = await http.get(str(config["url"]))
            status_code = response.status_code
            content = response.is_success and str(config["marker"]) in response.text
            outcome = outcome_of(response)
        except httpx.HTTPError as exc:
            error = type(exc).__name__
            outcome = await asettle_after_error(payer, exc)
    return {
        "status_code": status_code,
        "outcome": outcome.status if outcome else None,
        "reason": outcome.reason if outcome else None,
        "payment_id": format_transfer_id(outcome.payment_id)
        if outcome and outcome.payment_id
        else None,
        "transaction": outcome.tx_hash if outcome else None,
        "content": content,
        "error": error,
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    chain = RpcChain(config["rpc_url"], timeout_s=5.0, receipt_timeout_s=30.0)
    asset = read_asset(chain, config["token"])
    database = LedgerDatabase(LedgerSettings(database_url=config["database_url"]))
    books = AgentBooks(database, agent_id=config["agent_id"], asset=asset).ensure()
    books.start_task(config["task_id"], int(config["task_budget"]))
    # A short read timeout bounds a request to a paywall that died mid-answer;
    # a short settle-retry delay keeps the suite fast.
    settings = AgentSettings(settle_retry_delay_s=0.2, read_timeout_s=float(config["timeout_s"]))
    payer = Payer(
        signer=LocalSigner(os.environ["FARTHING_TEST_AGENT_KEY"]),
        chain=chain,
        asset=asset,
        books=books,
        settings=settings,
    )
    try:
        result = asyncio.run(buy(payer, config))
    finally:
        database.dispose()
        chain.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
