"""The background claimer claims before a payer's timed withdrawal can take earned money back.

A real uvicorn (lifespan on, so the middleware starts the claimer) serves a
channel route on anvil. The payer deposits and pays two requests with
vouchers, then calls ``initiateWithdraw`` for everything. Within a few claim
intervals the claimer sees the withdrawal in the chain mirror and claims and
settles; then anvil's clock jumps past the withdraw delay
(``evm_increaseTime``) and the payer finalizes: it gets back exactly the
unspent part, and the merchant holds exactly what was earned.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.wallet.chain import Call
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.test_channel_paywall import DELAY_S, _Channel, channel_store_fixture

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]  # the fixture, shared with test_channel_paywall


def test_a_timed_withdrawal_is_claimed_before_its_delay_ends(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore, tmp_path: Path
) -> None:
    env, authorizer = chain_env, LocalSigner.generate()
    ch = _Channel(env, authorizer)
    app = PaywallMiddleware(
        inner_app(),
        options=PaywallOptions(
            routes=[PaidRoute("/api/**", PRICE_ATOMIC, schemes=("batch-settlement",))],
            facilitator=env.facilitator(),
            store=store,
            pay_to=env.merchant,
            asset=env.asset,
            channels=ChannelOptions(
                channel_store, authorizer, withdraw_delay_s=DELAY_S, claim_interval_s=0.2
            ),
        ),
    )
    p, deposit = PRICE_ATOMIC, 100 * PRICE_ATOMIC
    escrow = ChannelEscrow(env.chain)
    # The payer sends its own withdrawal transactions: give it gas money.
    assert env.chain.send(Call(ch.payer.address, b"", value=10**18), sender=env.owner).ok
    with serve_in_thread(app) as url:
        with httpx.Client(base_url=url, timeout=30.0) as http:
            for payload in (ch.deposit(deposit, p), ch.voucher(2 * p)):
                paid = http.get("/api/data?n=1", headers=ch.header(payload))
                assert paid.status_code == 200, paid.text
        assert escrow.channel(ch.id) == (deposit, 0)  # nothing claimed yet: none is due
        assert escrow.initiate_withdraw(ch.config, deposit, sender=ch.payer).ok
        deadline = time.monotonic() + 20
        while escrow.channel(ch.id)[1] < 2 * p or env.token.balance_of(env.merchant) < 2 * p:
            assert time.monotonic() < deadline, "the claimer did not claim in time"
            time.sleep(0.1)
    assert escrow.channel(ch.id) == (deposit, 2 * p)
    env.chain.advance_time(DELAY_S + 1)
    assert escrow.finalize_withdraw(ch.config, sender=ch.payer).ok
    assert env.token.balance_of(ch.payer.address) == 50_000_000 - 2 * p
    assert env.token.balance_of(env.merchant) == 2 * p
    (record,) = channel_store.records()
    assert record.charged == record.total_claimed == 2 * p
