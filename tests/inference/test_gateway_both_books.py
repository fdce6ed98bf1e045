"""An agent buys a completion from the paid gateway in front of a real vLLM, and both sides book it.

The seller is `Gateway` (real vLLM upstream, the paywall, a local facilitator
settling on the memory chain, revenue booked in the seller's ledger). The
buyer is the agents' paying client under its own books. After one purchase,
the chain moved the quoted amount, the seller's revenue and the buyer's
posted spend both equal it and carry the same transaction, and each side's
books reconcile with the chain.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from farthing.agents import AgentBooks, Payer, async_paying_client, outcome_of
from farthing.inference import BuyDecision, InferenceSettings, response_format
from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import reconcile
from tests.conftest import VllmProcess
from tests.inference.conftest import PaidEnv

pytestmark = [pytest.mark.vllm, pytest.mark.anyio]

ANSWER_TOKENS = 300


async def test_an_agent_buys_a_completion_and_both_sides_book_it(
    vllm: VllmProcess, paid_env: PaidEnv, tmp_path: Path
) -> None:
    settings = InferenceSettings(
        upstream_url=vllm.base_url,
        request_timeout_s=120.0,
        upstream_timeout_s=120.0,
        max_tokens=ANSWER_TOKENS,
        max_tokens_max=ANSWER_TOKENS,
        metrics_refresh_s=0.0,
    )
    gateway = paid_env.gateway(settings)
    start_block = 0

    buyer_db = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{tmp_path / 'buyer.sqlite'}"))
    upgrade_database(buyer_db)
    books = AgentBooks(buyer_db, agent_id="buyer", asset=paid_env.asset).ensure()
    # The payer's wallet was funded by a mint: the buyer's books record it first.
    assert books.sync_deposits(paid_env.chain, paid_env.payer.address, from_block=start_block) == 1
    payer = Payer(signer=paid_env.payer, chain=paid_env.chain, asset=paid_env.asset, books=books)

    body = {
        "model": vllm.model,
        "messages": [{"role": "user", "content": "Article 3 costs 0.01 USDC. Buy or skip?"}],
        "max_tokens": ANSWER_TOKENS,
        "response_format": response_format(BuyDecision),
    }
    before = paid_env.balance(payer.address)
    async with async_paying_client(
        payer,
        task_id="inference-1",
        purpose="a structured buy/skip decision",
        max_price=paid_env.asset.parse("1"),
        transport=httpx.ASGITransport(app=gateway),
    ) as client:
        response = await client.post("http://gateway.test/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    BuyDecision.model_validate_json(response.json()["choices"][0]["message"]["content"])

    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "paid", outcome
    amount = outcome.amount
    assert amount is not None and amount > 0
    assert paid_env.balance(payer.address) == before - amount
    assert paid_env.balance(paid_env.merchant) == amount

    # The seller's books: one payment of exactly the amount, with the transaction.
    assert paid_env.revenue() == (amount, 1)
    with paid_env.ledger.read() as session:
        (row,) = revenue_report(session=session, payee_address=paid_env.merchant)
    assert row.posted == amount

    # The buyer's books: the same amount spent, nothing left reserved.
    status = books.status("inference-1")
    assert (status.spent, status.reserved, status.task_spent) == (amount, 0, amount)

    # Each side agrees with the chain.
    view = TokenChainView(paid_env.chain, paid_env.asset)
    assert reconcile(buyer_db, view, from_block=start_block).breaks == ()
    seller_breaks = reconcile(paid_env.ledger, view, from_block=start_block).breaks
    # The seller never booked the payer's funding mint: that is not its money.
    assert [b.kind.value for b in seller_breaks] == []
    await gateway.aclose()
    buyer_db.dispose()
