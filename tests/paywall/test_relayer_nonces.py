"""Two paywall processes settling with the same relayer key never collide on its account nonce.

Two real paywall processes (``lease_server.py``) share one SQLite payment
database and one relayer key (anvil dev account 5), and allocate the key's
nonces in that database (``LocalFacilitator(..., nonce_store=store)``).
Sixteen distinct payments go out at once, eight to each process: all sixteen
settle (200 with a successful ``PAYMENT-RESPONSE``), none is refused with
``transaction_failed``, and the chain shows sixteen transfers and sixteen
consecutive relayer nonces. The store-level test checks the allocation on
SQLite and PostgreSQL: a failed send allocates nothing, and the chain's
pending count wins when it is ahead of the database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from farthing.paywall import PaymentStore
from farthing.paywall.wire import unb64_json
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, challenge_of, sign_for
from tests.paywall.processes import PaywallProcess, start_paywall

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RELAYER_INDEX = 5


@pytest.fixture
def two_servers(chain_env: ChainEnv, tmp_path: Path) -> Iterator[list[PaywallProcess]]:
    config = {
        "rpc_url": chain_env.chain.rpc_url,
        "token": chain_env.asset.address,
        "merchant": chain_env.merchant,
        "database_url": f"sqlite:///{tmp_path / 'shared.sqlite'}",
        "relayer_index": RELAYER_INDEX,
        "shared_nonces": True,
    }
    servers: list[PaywallProcess] = []
    try:
        for _ in range(2):
            servers.append(start_paywall(config))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.anvil
def test_two_processes_with_one_relayer_key_settle_every_payment(
    chain_env: ChainEnv, two_servers: list[PaywallProcess]
) -> None:
    payers = [chain_env.new_payer() for _ in range(16)]
    relayer = chain_env.chain.dev_accounts()[RELAYER_INDEX].address
    nonce_before = chain_env.chain.w3.eth.get_transaction_count(relayer)
    merchant_before = chain_env.token.balance_of(chain_env.merchant)

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            challenge = challenge_of(await client.get(f"{two_servers[0].url}/api/data"))
            headers = [sign_for(challenge["accepts"][0], payer) for payer in payers]
            return list(
                await asyncio.gather(
                    *(
                        client.get(
                            f"{two_servers[i % 2].url}/api/data",
                            headers={"PAYMENT-SIGNATURE": header},
                        )
                        for i, header in enumerate(headers)
                    )
                )
            )

    responses = asyncio.run(go())
    problems = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert problems == []
    assert all(unb64_json(r.headers["payment-response"])["success"] for r in responses)
    assert chain_env.token.balance_of(chain_env.merchant) == merchant_before + 16 * PRICE_ATOMIC
    assert chain_env.chain.w3.eth.get_transaction_count(relayer) == nonce_before + 16


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PaymentStore]:
    if request.param == "sqlite":
        store = PaymentStore.sqlite(tmp_path / "nonces.sqlite")
    else:
        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        except psycopg.OperationalError:
            pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")
        store = PaymentStore(POSTGRES_URL)
    yield store
    store.dispose()


def test_relayer_nonces_are_allocated_once_and_a_failed_send_allocates_nothing(
    any_store: PaymentStore,
) -> None:
    relayer = "0x" + secrets.token_hex(20)  # this run's own row in a shared database
    with any_store.relayer_nonce("eip155:31337", relayer, lambda: 4) as ticket:
        assert ticket.nonce == 4
        ticket.sent()
    with any_store.relayer_nonce("eip155:31337", relayer, lambda: 4) as ticket:
        assert ticket.nonce == 5  # the database is ahead of a node that has not seen it yet
        # not sent: the send failed
    with any_store.relayer_nonce("eip155:31337", relayer, lambda: 5) as ticket:
        assert ticket.nonce == 5  # the failed send left no gap
        ticket.sent()
    with any_store.relayer_nonce("eip155:31337", relayer, lambda: 9) as ticket:
        assert ticket.nonce == 9  # someone else used the key: the chain wins
        ticket.sent()
    with (
        pytest.raises(RuntimeError, match="boom"),
        any_store.relayer_nonce("eip155:31337", relayer, lambda: 0) as ticket,
    ):
        ticket.sent()
        raise RuntimeError("boom")  # an exception after the send still counts it as sent
    with any_store.relayer_nonce("eip155:31337", relayer, lambda: 0) as ticket:
        assert ticket.nonce == 11
