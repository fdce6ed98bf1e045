"""A stranger makes a channel paywall's relayer pay gas for junk deposits: a 1-unit deposit with a voucher that can never be taken is settled on chain before the request is refused.

All real: a module anvil with our escrow placed, a ``farthing paywall serve
--config`` process selling ``/api/**`` through ``exact`` and
``batch-settlement`` (the config ``paywall init --channels`` writes, with no
``min_deposit``), a small upstream on uvicorn. The attacker sends, five
times, a ``deposit`` payload of one atomic unit whose voucher's cumulative
amount (1) is not ``charged + price``; every request is refused with 402
``cumulative_amount_mismatch``, yet each one first lands a deposit
transaction paid by the merchant's relayer. A voucher refused for its amount
should be refused before anything reaches the chain, as a deposit too small
for its voucher already is (``cumulative_exceeds_balance``, no transaction).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, chain_env, inner_app, serve_in_thread
from tests.paywall.test_channel_paywall import _Channel
from tests.paywall.test_serve_channels import CHANNEL_ROUTE, _config, _private, _serving

pytestmark = pytest.mark.anvil
__all__ = ["chain_env"]

TABLE = """
[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = 900
"""


def _error(response: httpx.Response) -> str:
    return str(unb64_json(response.headers["payment-required"]).get("error"))


def test_junk_deposits_cost_the_relayer_nothing(chain_env: ChainEnv, tmp_path: Path) -> None:
    env = chain_env
    place_channel_contracts(env.chain)
    authorizer = LocalSigner.generate()
    _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    relayer = env.chain.dev_accounts()[7]
    _private(tmp_path / "relayer.key", relayer.private_key.get_secret_value())
    config = _config(
        tmp_path, rpc_url=env.chain.rpc_url or "", token=env.asset.address, pay_to=env.merchant,
        extra=CHANNEL_ROUTE + TABLE,
    )  # fmt: skip
    escrow = ChannelEscrow(env.chain)
    attacker = _Channel(env, authorizer)

    def sent() -> int:
        return int(env.chain.w3.eth.get_transaction_count(relayer.address))

    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
        httpx.Client(base_url=ready["url"], timeout=60.0) as http,
    ):
        # Stopped before the chain: a deposit too small for its voucher.
        before = sent()
        small = http.get("/api/data", headers=attacker.header(attacker.deposit(1, PRICE_ATOMIC)))
        assert small.status_code == 402
        assert _error(small) == "invalid_batch_settlement_evm_cumulative_exceeds_balance"
        assert sent() == before

        # The junk: one unit deposited, a voucher of 1 that is never charged + price.
        for _ in range(5):
            junk = http.get("/api/data", headers=attacker.header(attacker.deposit(1, 1)))
            assert junk.status_code == 402, junk.text
            assert _error(junk) == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
        junk_deposits = escrow.channel(attacker.id)[0]
        relayer_transactions = sent() - before
    assert (junk_deposits, relayer_transactions) == (0, 0), (
        f"{relayer_transactions} relayer transactions landed {junk_deposits} units "
        "of deposits for requests that were all refused"
    )
