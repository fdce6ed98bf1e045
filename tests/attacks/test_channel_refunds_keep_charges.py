"""A channel payer cannot get back, through cooperative refunds, money a ``farthing paywall serve`` already charged: over-asked, stale and future refunds are refused, and each refund claims what was charged first.

All real: a module anvil with our escrow, a ``farthing paywall serve
--config`` process selling ``/api/**`` through channels, a small upstream.
The payer deposits 10 prices and pays 5 requests, then asks for a refund of
the whole deposit (refused), refunds with a stale or a future zero-charge
voucher (refused), a zero refund (refused), a partial refund of 2 prices
(sent, after claiming the 5 charged), pays once more, and asks for the full
rest (sent, after claiming the sixth). On chain the escrow ends with
``totalClaimed`` equal to what was charged and the payer got back exactly
the deposit less the charges; a voucher above what is left is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import (
    PAYER_FUNDS,
    PRICE_ATOMIC,
    ChainEnv,
    chain_env,
    inner_app,
    serve_in_thread,
)
from tests.paywall.test_channel_paywall import _Channel
from tests.paywall.test_serve_channels import CHANNEL_ROUTE, _config, _private, _serving

pytestmark = pytest.mark.anvil
__all__ = ["chain_env"]

TABLE = """
[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = 900
"""


def test_refunds_never_return_what_was_charged(chain_env: ChainEnv, tmp_path: Path) -> None:
    env, p = chain_env, PRICE_ATOMIC
    place_channel_contracts(env.chain)
    authorizer = LocalSigner.generate()
    _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[9].private_key.get_secret_value())
    config = _config(
        tmp_path, rpc_url=env.chain.rpc_url or "", token=env.asset.address, pay_to=env.merchant,
        extra=CHANNEL_ROUTE + TABLE,
    )  # fmt: skip
    escrow = ChannelEscrow(env.chain)
    ch = _Channel(env, authorizer)

    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
        httpx.Client(base_url=ready["url"], timeout=90.0) as http,
    ):

        def pay(payload: dict[str, Any]) -> httpx.Response:
            return http.get("/api/data", headers=ch.header(payload))

        def refund(ceiling: int, amount: int | None = None) -> httpx.Response:
            payload = ch.voucher(ceiling)
            payload["type"] = "refund"
            if amount is not None:
                payload["amount"] = str(amount)
            return pay(payload)

        def refused(response: httpx.Response) -> str:
            assert response.status_code == 402, response.text
            return str(unb64_json(response.headers["payment-required"])["error"])

        assert pay(ch.deposit(10 * p, p)).status_code == 200
        for n in range(2, 6):
            assert pay(ch.voucher(n * p)).status_code == 200
        assert refused(refund(5 * p, 10 * p)).startswith("invalid_batch_settlement_evm_refund")
        assert refused(refund(4 * p)).endswith("cumulative_amount_mismatch")
        assert refused(refund(6 * p)).endswith("cumulative_amount_mismatch")
        assert refused(refund(5 * p, 0)).endswith("refund_amount_invalid")
        assert escrow.channel(ch.id) == (10 * p, 0)

        partial = refund(5 * p, 2 * p)
        assert partial.status_code == 200, partial.text
        assert escrow.channel(ch.id) == (8 * p, 5 * p)
        assert pay(ch.voucher(6 * p)).status_code == 200
        full = refund(6 * p)
        assert full.status_code == 200, full.text
        assert escrow.channel(ch.id) == (6 * p, 6 * p)
        assert refused(refund(6 * p)).startswith("invalid_batch_settlement_evm_refund")
        assert refused(pay(ch.voucher(7 * p))).endswith("cumulative_exceeds_balance")
    assert env.token.balance_of(ch.payer.address) == PAYER_FUNDS - 6 * p
