"""A takeover never settles twice or refuses a payment that went through, even behind a transaction still in the node's pool.

Real anvil with automine off, the middleware over ``httpx.ASGITransport``, a
SQLite store and a SQLite ledger. A "dead owner" claimed the payment with a
short lease and sent its settlement into anvil's pool (a second
``LocalFacilitator`` with its own relayer key, whose receipt wait ends first),
then vanished. The payer's retry takes the row over, finds the nonce still
unused on-chain and resubmits; anvil then mines both transactions. Exactly
one moves the money, the retry answers 200 with the content and a successful
``PAYMENT-RESPONSE``, and the revenue is booked once. A claim whose lease is
still live is refused as a duplicate instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall import (
    LedgerRevenueBook,
    LocalFacilitator,
    PaymentKey,
    PaymentRecord,
    PaymentState,
    PaymentStore,
)
from farthing.paywall.wire import PaymentRequirements, decode_payment_signature, unb64_json
from farthing.wallet.chain import RpcChain
from tests.paywall.conftest import (
    PAYER_FUNDS,
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    paywalled,
    run,
    sign_for,
)

pytestmark = pytest.mark.anvil


@pytest.fixture
def books(tmp_path: Path) -> Iterator[LedgerRevenueBook]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield LedgerRevenueBook(database)
    database.dispose()


def _get(app: Any, header: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        async with asgi_client(app) as client:
            headers = {"PAYMENT-SIGNATURE": header} if header else {}
            return await client.get("/api/data", headers=headers)

    response: httpx.Response = run(go())
    return response


def _claim_as_dead_owner(
    store: PaymentStore, accepts: dict[str, Any], header: str, lease_s: float
) -> tuple[PaymentKey, Any, PaymentRequirements]:
    payload = decode_payment_signature(header, bytes_max=8192)
    assert not hasattr(payload, "reason")
    requirements = PaymentRequirements.from_wire(accepts)
    auth = payload.authorization  # type: ignore[union-attr]
    key = PaymentKey(
        requirements.network, requirements.asset, auth.from_address, "0x" + auth.nonce.hex()
    )
    record = PaymentRecord(
        key=key,
        state=PaymentState.CLAIMED,
        owner="",
        pay_to=requirements.pay_to,
        amount=requirements.amount,
        route="/api/**",
        resource="http://paywall.test/api/data",
        valid_after=auth.valid_after,
        valid_before=auth.valid_before,
    )
    assert store.claim(record, lease_s=lease_s).won
    return key, payload, requirements


def test_a_live_claim_is_not_taken_over(chain_env: ChainEnv, store: PaymentStore) -> None:
    app = paywalled(chain_env, store, claim_lease_s=60.0)
    accepts = challenge_of(_get(app))["accepts"][0]
    header = sign_for(accepts, chain_env.new_payer())
    _claim_as_dead_owner(store, accepts, header, lease_s=60.0)
    response = _get(app, header)
    # Its owner may be alive and settling: retry later, not "spent".
    assert response.status_code == 503 and response.json()["error"] == "payment_in_progress"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert "paid-data" not in response.text


def test_a_takeover_behind_a_pooled_transaction_ends_settled_once(
    chain_env: ChainEnv, store: PaymentStore, books: LedgerRevenueBook
) -> None:
    app = paywalled(chain_env, store, books=books, claim_lease_s=5.0)
    payer = chain_env.new_payer()
    accepts = challenge_of(_get(app))["accepts"][0]
    header = sign_for(accepts, payer)
    key, payload, requirements = _claim_as_dead_owner(store, accepts, header, lease_s=0.5)
    provider: Any = chain_env.chain.w3.provider
    dead_chain = RpcChain(chain_env.chain.rpc_url or "", timeout_s=5.0, receipt_timeout_s=0.5)
    dead = LocalFacilitator(dead_chain, chain_env.chain.dev_accounts()[8].signer())
    provider.make_request("evm_setAutomine", [False])
    try:
        first = dead.settle_sync(payload, requirements)
        assert first.pending and first.transaction  # in the pool, not mined
        time.sleep(0.6)  # the dead owner's lease runs out
        # Mine while the takeover's resubmission waits for its receipt.
        miner = threading.Timer(2.0, lambda: provider.make_request("evm_mine", []))
        miner.start()
        response = _get(app, header)
        miner.join()
    finally:
        provider.make_request("evm_setAutomine", [True])
        dead_chain.close()
    assert response.status_code == 200, response.text
    assert response.json()["secret"] == "paid-data"
    receipt = unb64_json(response.headers["payment-response"])
    assert receipt["success"] is True
    assert chain_env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC
    record = store.get(key)
    assert record is not None and record.state == PaymentState.SETTLED
    assert record.booked and record.delivered and record.tx_hash == receipt["transaction"]
    with books.database.read() as session:
        rows = revenue_report(session=session, payee_address=chain_env.merchant)
    assert [(r.posted, r.payment_count) for r in rows] == [(PRICE_ATOMIC, 1)]
    again = _get(app, header)
    assert again.status_code == 402 and again.json()["error"] == "nonce_already_used"
