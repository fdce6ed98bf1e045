"""An agent buys completions from another node's paid inference gateway; both sides keep books.

Run a vLLM server first (CPU path shown; on a GPU use `pip install vllm`):

    bash scripts/setup_vllm.sh
    farthing inference build-model
    farthing inference serve --model ~/.farthing/models/tiny-llama --port 8000 &
    python examples/agent_buys_inference.py --upstream http://127.0.0.1:8000/v1

Everything else runs in this process on the in-process chain: the seller's
gateway (the paywall, a local facilitator and its revenue ledger) and the
buyer (the agents' paying client under its own budget). Each completion is
priced from its prompt tokens plus max_tokens before vLLM runs, paid with an
EIP-3009 authorization, and booked by both sides. At the end both ledgers are
printed and reconciled with the chain. (The tiny model has random weights:
its decisions are schema-valid but its reasons are noise.)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from farthing.agents import AgentBooks, Payer, async_paying_client, outcome_of
from farthing.inference import (
    BuyDecision,
    Gateway,
    GatewayPayment,
    InferenceSettings,
    response_format,
)
from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import reconcile
from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentStore
from farthing.wallet import LocalSigner, MemoryChain, Stablecoin, deploy_stablecoin

QUESTIONS = (
    "Article 1 costs 0.01 USDC and is about EIP-3009. Buy or skip?",
    "Article 2 costs 0.50 USDC and is about gardening. Buy or skip?",
)
MAX_TOKENS = 200


def ledger_at(path: Path) -> LedgerDatabase:
    database = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{path}"))
    upgrade_database(database)
    return database


async def main(upstream: str, model: str | None) -> None:
    console = Console(highlight=False)
    work = Path(tempfile.mkdtemp(prefix="farthing-inference-example-"))

    chain = MemoryChain()
    operator, relayer = chain.dev_accounts()[0].signer(), chain.dev_accounts()[1].signer()
    usdc = deploy_stablecoin(chain, sender=operator)
    token = Stablecoin(chain, usdc)
    token.configure_minter(operator.address, sender=operator)

    # The seller: a gateway in front of vLLM, paid to its own address.
    seller_address = LocalSigner.generate().address
    seller_books = ledger_at(work / "seller.sqlite")
    gateway = Gateway(
        InferenceSettings(
            upstream_url=upstream, max_tokens_default=MAX_TOKENS, max_tokens_max=MAX_TOKENS
        ),
        payment=GatewayPayment(
            facilitator=LocalFacilitator(chain, relayer),
            store=PaymentStore.sqlite(work / "seller-payments.sqlite"),
            asset=usdc,
            pay_to=seller_address,
            books=LedgerRevenueBook(seller_books),
        ),
    )

    # The buyer: a funded wallet whose deposit is booked before it spends.
    buyer = LocalSigner.generate()
    token.mint(buyer.address, usdc.parse("5"), sender=operator)
    buyer_db = ledger_at(work / "buyer.sqlite")
    books = AgentBooks(buyer_db, agent_id="inference-buyer", asset=usdc).ensure()
    books.sync_deposits(chain, buyer.address)
    payer = Payer(signer=buyer, chain=chain, asset=usdc, books=books)

    served = model
    async with httpx.AsyncClient(base_url=upstream, timeout=10.0) as plain:
        if served is None:
            served = (await plain.get("/models")).json()["data"][0]["id"]

    console.print(
        f"seller {seller_address} sells {served} through its gateway; buyer {buyer.address}"
    )
    async with async_paying_client(
        payer,
        task_id="inference-example",
        purpose="buy/skip decisions",
        max_price=usdc.parse("0.50"),
        transport=httpx.ASGITransport(app=gateway),
    ) as client:
        for question in QUESTIONS:
            body = {
                "model": served,
                "messages": [{"role": "user", "content": question}],
                "max_tokens": MAX_TOKENS,
                "response_format": response_format(BuyDecision),
            }
            response = await client.post("http://gateway.local/v1/chat/completions", json=body)
            outcome = outcome_of(response)
            paid = usdc.format(outcome.amount) if outcome and outcome.amount else "nothing"
            if response.status_code == 200:
                decision = BuyDecision.model_validate_json(
                    response.json()["choices"][0]["message"]["content"]
                )
                console.print(f"  paid {paid}: {decision.model_dump()}")
            else:
                console.print(f"  {response.status_code}: {response.text[:200]}")
    await gateway.aclose()

    status = books.status("inference-example")
    buyer_table = Table("buyer's books", "amount")
    buyer_table.add_row("funded", usdc.format(status.funded))
    buyer_table.add_row("spent", usdc.format(status.spent))
    buyer_table.add_row("reserved", usdc.format(status.reserved))
    console.print(buyer_table)
    seller_table = Table("seller's books: resource", "payments", "revenue")
    with seller_books.read() as session:
        for row in revenue_report(session=session, payee_address=seller_address):
            seller_table.add_row(str(row.resource), str(row.payment_count), usdc.format(row.posted))
    console.print(seller_table)

    view = TokenChainView(chain, usdc)
    for name, database in (("buyer", buyer_db), ("seller", seller_books)):
        breaks = reconcile(database, view).breaks
        console.print(f"{name}'s books against the chain: {len(breaks)} breaks")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upstream", required=True, help="vLLM's OpenAI base URL, e.g. http://127.0.0.1:8000/v1"
    )
    parser.add_argument("--model", help="served model name (default: the first the server lists)")
    args = parser.parse_args()
    asyncio.run(main(args.upstream, args.model))
