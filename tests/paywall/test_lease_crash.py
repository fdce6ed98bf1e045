"""A paywall killed with SIGKILL mid-settlement loses nobody's money: the payer's retry or the sweep finishes the payment from the chain.

A real paywall process (``lease_server.py``: uvicorn, the middleware, the
in-process facilitator, a SQLite payment store and a SQLite ledger) is armed
with ``FARTHING_CRASH_AT=paywall.after_submit``: it kills itself with SIGKILL
right after the settlement transaction reaches anvil, before its receipt, so
the chain has debited the payer while the payment row is still ``claimed``.
After a restart and once the claim's short lease has run out, (1) the payer's
retry with the same ``PAYMENT-SIGNATURE`` gets 200, the content and a
successful ``PAYMENT-RESPONSE``, and the revenue is booked once; (2) without
any retry, ``farthing paywall resolve`` settles and books it, and a later retry
still gets the content it paid for, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import PaymentState, PaymentStore
from farthing.paywall.wire import unb64_json
from tests.conftest import cli_env, run_farthing
from tests.paywall.conftest import PAYER_FUNDS, PRICE_ATOMIC, ChainEnv, challenge_of, sign_for
from tests.paywall.processes import copy_after_delivery, running_paywall, start_paywall

pytestmark = pytest.mark.anvil

LEASE_S = 2.0


@pytest.fixture
def config(chain_env: ChainEnv, tmp_path: Path) -> dict[str, Any]:
    return {
        "rpc_url": chain_env.chain.rpc_url,
        "token": chain_env.asset.address,
        "merchant": chain_env.merchant,
        "database_url": f"sqlite:///{tmp_path / 'payments.sqlite'}",
        "ledger_database_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "relayer_index": 7,
        "claim_lease_s": LEASE_S,
    }


@pytest.fixture
def ledger(config: dict[str, Any]) -> Iterator[LedgerDatabase]:
    database = LedgerDatabase(LedgerSettings(database_url=config["ledger_database_url"]))
    upgrade_database(database)
    yield database
    database.dispose()


def _revenue(ledger: LedgerDatabase, merchant: str) -> tuple[int, int]:
    """(atomic units, number of transfers) booked to ``merchant``."""
    with ledger.read() as session:
        rows = revenue_report(session=session, payee_address=merchant)
    return sum(r.posted for r in rows), sum(r.payment_count for r in rows)


def _crash_mid_settlement(chain_env: ChainEnv, config: dict[str, Any]) -> tuple[Any, str]:
    """Pay a paywall armed to die after submitting; return the payer and the header."""
    payer = chain_env.new_payer()
    server = start_paywall(config, crash_at="paywall.after_submit")
    try:
        with httpx.Client(timeout=30.0) as client:
            challenge = challenge_of(client.get(f"{server.url}/api/data"))
            header = sign_for(challenge["accepts"][0], payer)
            with pytest.raises(httpx.TransportError):
                client.get(f"{server.url}/api/data", headers={"PAYMENT-SIGNATURE": header})
        assert server.wait_killed() == -9  # SIGKILL: no cleanup ran
    finally:
        server.stop()
    # The chain took the money; the database does not know it.
    assert chain_env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC
    store = PaymentStore(config["database_url"])
    try:
        (record,) = store.records()
        assert record.state == PaymentState.CLAIMED and record.tx_hash is None
    finally:
        store.dispose()
    return payer, header


def test_the_payers_retry_after_a_crash_gets_the_content_and_books_once(
    chain_env: ChainEnv, config: dict[str, Any], ledger: LedgerDatabase
) -> None:
    payer, header = _crash_mid_settlement(chain_env, config)
    with running_paywall(config) as server, httpx.Client(timeout=30.0) as client:
        time.sleep(LEASE_S + 0.5)  # the dead owner's lease runs out
        retry = client.get(f"{server.url}/api/data", headers={"PAYMENT-SIGNATURE": header})
        assert retry.status_code == 200, retry.text
        assert retry.json()["secret"] == "paid-data"
        receipt = unb64_json(retry.headers["payment-response"])
        assert receipt["success"] is True and receipt["transaction"].startswith("0x")
        again = copy_after_delivery(client, f"{server.url}/api/data", header)
        assert again.status_code == 402 and again.json()["error"] == "nonce_already_used"
    assert chain_env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC
    assert _revenue(ledger, chain_env.merchant) == (PRICE_ATOMIC, 1)
    store = PaymentStore(config["database_url"])
    try:
        (record,) = store.records()
        assert record.state == PaymentState.SETTLED and record.booked
        assert record.tx_hash == receipt["transaction"]
    finally:
        store.dispose()


def test_resolve_books_a_crashed_settlement_without_a_retry(
    chain_env: ChainEnv, config: dict[str, Any], ledger: LedgerDatabase, tmp_path: Path
) -> None:
    payer, header = _crash_mid_settlement(chain_env, config)
    args = [
        "paywall",
        "resolve",
        "--rpc-url",
        config["rpc_url"],
        "--database-url",
        config["database_url"],
        "--ledger-database-url",
        config["ledger_database_url"],
        "--json",
    ]
    env = cli_env(tmp_path)
    time.sleep(LEASE_S + 0.5)  # a live owner's claim is never swept (test_lease_store.py)
    swept = run_farthing(args, env=env)
    assert swept.code == 0, swept.stderr
    # Every report names the database it read.
    assert swept.json()["database"].endswith("payments.sqlite")
    assert {k: v for k, v in swept.json().items() if k != "database"} == {
        "settled": 1,
        "failed": 0,
        "expired": 0,
        "still_pending": 0,
        "booked": 1,
    }
    assert _revenue(ledger, chain_env.merchant) == (PRICE_ATOMIC, 1)
    again = run_farthing(args, env=env)
    assert again.json()["settled"] == 0 and again.json()["booked"] == 0
    # The payer paid and never saw the content: the same header still gets it, once.
    with running_paywall(config) as server, httpx.Client(timeout=30.0) as client:
        retry = client.get(f"{server.url}/api/data", headers={"PAYMENT-SIGNATURE": header})
        assert retry.status_code == 200, retry.text
        assert retry.json()["secret"] == "paid-data"
        assert unb64_json(retry.headers["payment-response"])["success"] is True
        replay = copy_after_delivery(client, f"{server.url}/api/data", header)
        assert replay.status_code == 402 and replay.json()["error"] == "nonce_already_used"
    assert chain_env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC
    assert _revenue(ledger, chain_env.merchant) == (PRICE_ATOMIC, 1)
