"""No voucher is served while a cooperative refund is in flight (issue 17, finding 3): every request is paid.

All real: anvil with our escrow and token, a ``farthing paywall serve
--config`` process with a ``[channels]`` table whose RPC goes through a
``FaultProxy``, and a payer signing its own deposit, vouchers and refund.
The proxy holds the refund's transaction, then its receipt, for a few seconds
each, so the refund is certainly in flight when the payer sends three more cumulative vouchers.
Each is refused (402), the refund lands, and afterwards the chain, the
server's channel row and the payer agree: one request was served and one was
paid; the rest of the deposit went back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.faults.fault_proxy import FaultProxy
from tests.paywall.conftest import PAYER_FUNDS, PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.test_channel_paywall import _Channel
from tests.paywall.test_serve_channels import CHANNEL_ROUTE, _config, _private, _serving

pytestmark = pytest.mark.anvil

TABLE = """
[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = 900
"""
# How long the proxy holds the refund's transaction, then its first receipt
# poll: each under the server's 5 s RPC timeout, together long enough for the
# three vouchers on a loaded machine.
HOLD_S = 3.5


def test_vouchers_sent_while_a_refund_is_in_flight_are_refused(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env, p = chain_env, PRICE_ATOMIC
    place_channel_contracts(env.chain)
    authorizer = LocalSigner.generate()
    _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[7].private_key.get_secret_value())
    proxy = FaultProxy(env.chain.rpc_url or "")
    config = _config(
        tmp_path, rpc_url=proxy.url, token=env.asset.address, pay_to=env.merchant,
        extra=CHANNEL_ROUTE + TABLE,
    )  # fmt: skip
    ch = _Channel(env, authorizer)
    refund = ch.voucher(p)
    refund["type"] = "refund"
    try:
        with (
            serve_in_thread(inner_app()) as upstream,
            _serving(config, upstream, tmp_path / "data") as (ready, _),
            httpx.Client(base_url=ready["url"], timeout=60.0) as http,
            ThreadPoolExecutor(1) as pool,
        ):
            first = http.get("/api/data", headers=ch.header(ch.deposit(10 * p, p)))
            assert first.status_code == 200, first.text
            sent_before = proxy.calls["eth_sendRawTransaction"]
            proxy.delay("eth_sendRawTransaction", HOLD_S, times=1)
            proxy.delay("eth_getTransactionReceipt", HOLD_S, times=1)
            refunding = pool.submit(http.get, "/api/data", headers=ch.header(refund))
            deadline = time.monotonic() + 30
            while proxy.calls["eth_sendRawTransaction"] == sent_before:
                assert time.monotonic() < deadline, "the refund never reached the chain"
                time.sleep(0.02)
            # The refund's transaction is held by the proxy: the refund is in flight.
            during = [
                http.get("/api/data", headers=ch.header(ch.voucher(k * p))) for k in (2, 3, 4)
            ]
            assert refunding.running(), "the refund finished before the vouchers were sent"
            done = refunding.result(timeout=60)
    finally:
        proxy.close()
    assert done.status_code == 200, done.text
    assert done.json()["refunded"] == str(9 * p)
    assert [r.status_code for r in during] == [402, 402, 402], [r.text for r in during]
    reasons = [unb64_json(r.headers["payment-required"])["error"] for r in during]
    # The first is above what stays after the refund; the next two build on a
    # charge that was never made.
    prefix = "invalid_batch_settlement_evm_"
    assert (
        reasons
        == [prefix + "cumulative_exceeds_balance"] + [prefix + "cumulative_amount_mismatch"] * 2
    )
    # One request served, one paid: the chain, the server's row and the payer agree.
    assert ChannelEscrow(env.chain).channel(ch.id) == (p, p)
    assert env.token.balance_of(ch.payer.address) == PAYER_FUNDS - p
    store = ChannelStore(
        f"sqlite:///{tmp_path / 'payments.sqlite'}",
        domain=ChannelDomain(env.chain.chain_id),
        network=env.chain.network,
    )
    try:
        (record,) = store.records()
    finally:
        store.dispose()
    assert record.charged == record.total_claimed == record.balance == p
    assert record.refunding == 0
