"""A channel whose payer is withdrawing takes no voucher that could go unpaid, and is claimed at once (issue 17, finding 1).

All real: anvil with our escrow and token, a ``farthing paywall serve
--config`` process with a ``[channels]`` table (its own claimer ticking every
half second), and two payers signing their own deposits and vouchers and
sending their own ``initiateWithdraw``/``finalizeWithdraw``. The issue's
run, replayed:

- B deposits 10 × P, pays one request, and starts withdrawing everything.
  The server claims B's P before the delay can end, and refuses B's next
  voucher (2 × P): it is above what stays in the escrow once the withdrawal
  finalizes (before the fix it was served, and never paid). After the delay
  B finalizes and gets back exactly 9 × P.
- A deposits 100 × P, pays 10 requests, and withdraws everything: A's 10 × P
  are claimed at once (B blocks nothing) and A gets back 90 × P.
- The merchant holds 11 × P, the server's rows charged exactly what the
  chain claimed, and ``farthing paywall claim`` finds nothing failing.
"""

from __future__ import annotations

import time
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
from farthing.wallet.chain import Call
from farthing.wallet.signer import LocalSigner
from tests.conftest import cli_env, run_farthing
from tests.paywall.conftest import PAYER_FUNDS, PRICE_ATOMIC, ChainEnv, inner_app, serve_in_thread
from tests.paywall.test_channel_paywall import DELAY_S, _Channel
from tests.paywall.test_serve_channels import CHANNEL_ROUTE, _config, _private, _serving

pytestmark = pytest.mark.anvil

TABLE = f"""
[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = {DELAY_S}
claim_interval_s = 0.5
"""


def _until(what: str, done: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_withdrawing_channel_is_claimed_at_once_and_takes_no_unpayable_voucher(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env, p = chain_env, PRICE_ATOMIC
    place_channel_contracts(env.chain)
    authorizer = LocalSigner.generate()
    _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[8].private_key.get_secret_value())
    config = _config(
        tmp_path, rpc_url=env.chain.rpc_url or "", token=env.asset.address, pay_to=env.merchant,
        extra=CHANNEL_ROUTE + TABLE,
    )  # fmt: skip
    escrow = ChannelEscrow(env.chain)
    a, b = _Channel(env, authorizer), _Channel(env, authorizer)
    for ch in (a, b):  # the payers send their own withdrawal transactions
        assert env.chain.send(Call(ch.payer.address, b"", value=10**18), sender=env.owner).ok
    merchant_before = env.token.balance_of(env.merchant)

    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
        httpx.Client(base_url=ready["url"], timeout=60.0) as http,
    ):

        def pay(ch: _Channel, payload: dict[str, object]) -> httpx.Response:
            return http.get("/api/data", headers=ch.header(payload))

        assert pay(b, b.deposit(10 * p, p)).status_code == 200
        assert escrow.initiate_withdraw(b.config, 10 * p, sender=b.payer).ok
        _until("B was not claimed at once", lambda: escrow.channel(b.id)[1] == p)
        refused = pay(b, b.voucher(2 * p))
        assert refused.status_code == 402, refused.text
        reason = unb64_json(refused.headers["payment-required"])["error"]
        assert reason == "invalid_batch_settlement_evm_cumulative_exceeds_balance"
        env.chain.advance_time(DELAY_S + 1)
        assert escrow.finalize_withdraw(b.config, sender=b.payer).ok
        assert env.token.balance_of(b.payer.address) == PAYER_FUNDS - p

        assert pay(a, a.deposit(100 * p, p)).status_code == 200
        for n in range(2, 11):
            assert pay(a, a.voucher(n * p)).status_code == 200
        assert escrow.initiate_withdraw(a.config, 100 * p, sender=a.payer).ok
        _until("A was not claimed at once", lambda: escrow.channel(a.id)[1] == 10 * p)
        assert pay(a, a.voucher(11 * p)).status_code == 402
        env.chain.advance_time(DELAY_S + 1)
        assert escrow.finalize_withdraw(a.config, sender=a.payer).ok
        assert env.token.balance_of(a.payer.address) == PAYER_FUNDS - 10 * p
        _until(
            "the claims were not settled",
            lambda: env.token.balance_of(env.merchant) - merchant_before == 11 * p,
        )
        claim = run_farthing(
            [
                "paywall", "claim", "--json", "--rpc-url", env.chain.rpc_url or "",
                "--authorizer-key-file", str(tmp_path / "authorizer.key"),
                "--key-file", str(tmp_path / "relayer.key"),
                "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}",
            ],
            env=cli_env(tmp_path / "data"),
        )  # fmt: skip
    assert claim.code == 0, claim.stderr
    assert claim.json()["failures"] == [] and claim.json()["claimed"] == {}
    assert escrow.channel(a.id) == (10 * p, 10 * p) and escrow.channel(b.id) == (p, p)
    store = ChannelStore(
        f"sqlite:///{tmp_path / 'payments.sqlite'}",
        domain=ChannelDomain(env.chain.chain_id),
        network=env.chain.network,
    )
    try:
        charged = {record.channel_id: record.charged for record in store.records()}
    finally:
        store.dispose()
    assert charged == {a.id: 10 * p, b.id: p}
