"""``@x402/fetch`` with ``@x402/evm``'s batch-settlement client, in a real Node process, pays our channel route.

Our middleware runs under a real uvicorn on 127.0.0.1 in front of anvil, with
a ``batch-settlement`` route and a migrated SQLite ledger; the payer's key
reaches Node on stdin. The Node script (``pay_with_x402_fetch_channel.mjs``)
uses only the SDK's public API (plus a spend-control entry for our token):
it opens a channel with one deposit and pays every request with a voucher.
Each answer must carry the content and a ``PAYMENT-RESPONSE`` whose
``channelState`` counts up by the price; then our claimer claims and settles
and the merchant's balance equals what our channel row and our books say
was earned.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from farthing.ledger import LedgerDatabase
from farthing.paywall import PaymentStore
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.wallet.signer import LocalSigner
from tests import zygote
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, serve_in_thread
from tests.paywall.test_channel_books import balances, channel_app, ledger_fixture
from tests.paywall.test_channel_paywall import channel_store_fixture
from tests.paywall.test_x402_fetch import REPO, _node_missing

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture", "ledger_fixture"]  # fixtures shared with other modules

SCRIPT = Path(__file__).with_name("pay_with_x402_fetch_channel.mjs")


@pytest.mark.skipif(_node_missing() is not None, reason=str(_node_missing()))
def test_x402_fetch_in_node_pays_our_channel_route(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore, ledger: LedgerDatabase
) -> None:
    env, payer, authorizer = chain_env, chain_env.new_payer(), LocalSigner.generate()
    books = LedgerRevenueBook(ledger)
    app = channel_app(env, store, channel_store, authorizer, books)
    requests_n = 6
    block_before = env.chain.block_number()
    merchant_before = env.token.balance_of(env.merchant)
    with serve_in_thread(app) as url:
        proc = zygote.run_process(
            [
                "node", str(SCRIPT), f"{url}/api/data", env.chain.network,
                env.asset.address, env.chain.rpc_url or "", str(requests_n),
            ],
            input=payer.private_key.get_secret_value(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == requests_n
    for n, result in enumerate(results, start=1):
        assert result["status"] == 200, result
        assert json.loads(result["body"]) == {"secret": "paid-data"}
        receipt = result["paymentResponse"]
        assert receipt["success"] is True and receipt["payer"] == payer.address
        assert receipt["extra"]["chargedAmount"] == str(PRICE_ATOMIC)
        state = receipt["extra"]["channelState"]
        assert state["chargedCumulativeAmount"] == str(n * PRICE_ATOMIC)
    assert env.chain.block_number() - block_before == 1  # the one deposit
    assert store.records() == []  # no exact payment was made
    (record,) = channel_store.records()
    assert record.config.payer == payer.address and record.charged == requests_n * PRICE_ATOMIC
    deposit = record.balance
    assert env.token.balance_of(payer.address) == 50_000_000 - deposit

    assert app.channels is not None
    report = asyncio.run(app.channels.claimer.tick(force=True))
    assert report.failures == ()
    assert ChannelEscrow(env.chain).channel(record.channel_id) == (deposit, record.charged)
    assert env.token.balance_of(env.merchant) - merchant_before == requests_n * PRICE_ATOMIC
    earned = requests_n * PRICE_ATOMIC
    assert balances(books, env, "0x" + record.channel_id.hex()) == {
        "receivable": 0,
        "claimed": 0,
        "cash": earned,
        "revenue": earned,
    }
