"""Fixtures for the jobs tests: an agent, a worker and an operator on a fresh token.

Each test gets a fresh stablecoin on the chain it runs on (memory or anvil),
the auth-capture contracts at their canonical addresses, an agent whose books
are funded by a real mint to its wallet, and a :class:`JobService` whose
operator sends the escrow calls with its own key. ``Env.check()`` is the
invariant every step must keep, in ints: the agent's wallet holds exactly
what its budget has left (funded + refunded − captured − held), the escrow's
token store holds exactly what the jobs hold, each worker holds what was
captured for it, and the operator paid exactly what was refunded.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from farthing.agents.books import AgentBooks
from farthing.agents.policy import SpendPolicy
from farthing.jobs import DirectEscrowOperator, JobService, JobSettings, ScriptedReviewer
from farthing.ledger import LedgerDatabase, LedgerSettings, lookup_accounts, upgrade_database
from farthing.paywall.schemes.auth_capture.contract import (
    AuthCaptureEscrow,
    place_auth_capture_contracts,
)
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import free_port

PAYER_FUNDS = 10_000_000  # 10 USDC: the agent's whole budget
OPERATOR_FUNDS = 5_000_000  # the operator's refund liquidity
POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass
class Env:
    chain: Chain
    token: Stablecoin
    escrow: AuthCaptureEscrow
    database: LedgerDatabase
    books: AgentBooks
    service: JobService
    payer: LocalSigner
    operator: LocalSigner
    owner: LocalSigner
    reviewer: ScriptedReviewer
    workers: list[str] = field(default_factory=list)

    def worker(self) -> str:
        address = LocalSigner.generate().address
        self.workers.append(address)
        return address

    def deadline(self, seconds: int = 3_600) -> int:
        return self.chain.timestamp() + seconds

    def check(self) -> None:
        """Chain and books agree, to the atomic unit."""
        jobs = self.service.list(limit=1_000)
        held = sum(j.held for j in jobs)
        captured = sum(j.captured for j in jobs)
        refunded = sum(j.refunded for j in jobs)
        with self.database.read() as session:
            (budget,) = lookup_accounts(session=session, ids=[self.books.budget_account_id])
        assert budget.debits_pending == held
        assert budget.debits_posted == captured
        assert budget.credits_posted == PAYER_FUNDS + refunded
        wallet = self.token.balance_of(self.payer.address)
        assert wallet == budget.credits_posted - budget.debits_posted - budget.debits_pending
        assert wallet == PAYER_FUNDS - held - captured + refunded
        store = self.escrow.token_store(self.operator.address)
        assert self.token.balance_of(store) == held
        assert self.token.balance_of(self.operator.address) == OPERATOR_FUNDS - refunded
        for worker in self.workers:
            paid = sum(j.captured for j in jobs if j.worker == worker)
            assert self.token.balance_of(worker) == paid
        for job in jobs:
            if job.payment_info is not None and job.authorize_tx is not None:
                state = self.escrow.payment_state(job.payment_info)
                assert state.capturable_amount == job.held
                assert state.refundable_amount == job.captured - job.refunded


def make_env(chain: Chain, database: LedgerDatabase, **settings: int) -> Env:
    owner, payer, operator = (a.signer() for a in chain.dev_accounts()[:3])
    place_auth_capture_contracts(chain)
    asset = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    token = Stablecoin(chain, asset)
    start = chain.block_number()
    assert token.configure_minter(owner.address, sender=owner).ok
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    assert token.mint(operator.address, OPERATOR_FUNDS, sender=owner).ok
    books = AgentBooks(database, agent_id=f"hirer-{uuid.uuid4().hex[:8]}", asset=asset).ensure()
    # Stated, not the newcomer's default (a person approves above 0.10): tests that
    # need an approval threshold set their own.
    books.set_policy(SpendPolicy())
    assert books.sync_deposits(chain, payer.address, from_block=start) == 1
    escrow = AuthCaptureEscrow(chain)
    reviewer = ScriptedReviewer()
    service = JobService(
        books=books,
        chain=chain,
        operator=DirectEscrowOperator(escrow, operator, asset),
        payer=payer,
        escrow=escrow,
        reviewer=reviewer,
        settings=JobSettings(**settings),
    )
    return Env(chain, token, escrow, database, books, service, payer, operator, owner, reviewer)


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[LedgerDatabase]:
    database = LedgerDatabase(LedgerSettings(data_dir=tmp_path, busy_timeout_s=60))
    upgrade_database(database)
    yield database
    database.dispose()


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def postgres_database() -> Iterator[LedgerDatabase]:
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")
    schema = f"jobs_test_{uuid.uuid4().hex[:16]}"
    database = LedgerDatabase(LedgerSettings(database_url=POSTGRES_URL, postgres_schema=schema))
    upgrade_database(database)
    yield database
    database.dispose()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def env(chain: Chain, sqlite_database: LedgerDatabase) -> Env:
    """A fresh token and agent on the shared memory chain, then on the shared anvil."""
    return make_env(chain, sqlite_database)


@contextmanager
def serve_at(make_app: Callable[[str], Any]) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 in a thread, serving ``make_app(its own URL)``.

    The jobs app names its public URL in sign-in messages, so the URL must be
    known before the app is built.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(
        make_app(url), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
