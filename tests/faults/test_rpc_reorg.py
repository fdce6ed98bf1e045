"""A reorg that drops a booked settlement is reported by ``farthing ledger reconcile`` and resolved so that ledger = chain.

Each test runs its own anvil: it pays through the real paywall (revenue
booked in a real SQLite ledger), then rewinds the chain with
``evm_snapshot``/``evm_revert`` so the settlement transaction is gone.
Reconciliation, run as the real CLI, must report it as ``missing_on_chain``
and ``--resolve`` must not guess: while the authorization is unused and still
valid it waits; once the window has closed it reverses the revenue with a
correcting transfer; if the authorization was executed again (once: the
EIP-3009 nonce refuses a second time) it rebooks it on the new transaction.
Afterwards a second run finds no break and the books balance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farthing.devchain.node import start_anvil
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database, verify
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import ReconciliationReport, reconcile
from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentStore
from farthing.paywall.wire import PaymentRequirements, decode_payment_signature, unb64_json
from tests.conftest import CliResult, anvil_missing_reason, cli_env, run_farthing
from tests.faults.test_rpc_faults import Paywall, _books_balance, _revenue_balance
from tests.paywall.conftest import PAYER_FUNDS, PRICE_ATOMIC, ChainEnv, challenge_of, deploy_env

pytestmark = pytest.mark.anvil


@pytest.fixture
def env() -> Iterator[ChainEnv]:
    """A fresh anvil per test: these tests rewind the chain and move its clock."""
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        made = deploy_env(node)
        yield made
        made.chain.close()


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def books(ledger_url: str) -> Iterator[LedgerRevenueBook]:
    database = LedgerDatabase(LedgerSettings(database_url=ledger_url))
    upgrade_database(database)
    yield LedgerRevenueBook(database)
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PaymentStore]:
    payments = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    yield payments
    payments.dispose()


def _rpc(env: ChainEnv, method: str, *params: Any) -> Any:
    return env.chain.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _reconcile(env: ChainEnv, ledger_url: str, tmp_path: Path, *extra: str) -> CliResult:
    return run_farthing(
        ["ledger", "reconcile", "--rpc-url", env.chain.rpc_url or "", "--token", env.asset.address]
        + ["--database-url", ledger_url, "--json", *extra],
        env=cli_env(tmp_path / "data"),
        timeout_s=60,
    )


def _in_process(
    env: ChainEnv, books: LedgerRevenueBook, *, resolve: bool = False
) -> ReconciliationReport:
    """The same run as the CLI's, without a process start (the CLI runs at the decisive steps)."""
    view = TokenChainView(env.chain, env.asset)
    return reconcile(books.database, view, resolve=resolve)


def _paid_then_dropped(
    env: ChainEnv, store: PaymentStore, books: LedgerRevenueBook, ledger_url: str, tmp_path: Path
) -> tuple[Any, str, str]:
    """Pay once through the paywall, check the books agree, then reorg the settlement away."""
    payer = env.new_payer()
    wall = Paywall(env, store, env.chain, books)
    header = wall.header(payer)
    snapshot = _rpc(env, "evm_snapshot")
    paid = wall.get(header)
    assert paid.status_code == 200, paid.text
    tx_hash = unb64_json(paid.headers["payment-response"])["transaction"]
    assert _revenue_balance(books, env.merchant) == PRICE_ATOMIC
    assert _in_process(env, books).breaks == ()
    assert _rpc(env, "evm_revert", snapshot) is True
    assert _rpc(env, "eth_getTransactionReceipt", tx_hash) is None  # gone from the chain
    assert env.token.balance_of(payer.address) == PAYER_FUNDS  # the money never moved
    return payer, header, tx_hash


def _missing(report: dict[str, Any], tx_hash: str) -> dict[str, Any]:
    (item,) = report["items"]
    assert item["kind"] == "missing_on_chain" and item["tx_hash"] == tx_hash, item
    assert item["ledger_amount"] == str(PRICE_ATOMIC)
    return item


def test_a_dropped_settlement_waits_while_valid_then_is_reversed_once_it_expired(
    env: ChainEnv, store: PaymentStore, books: LedgerRevenueBook, ledger_url: str, tmp_path: Path
) -> None:
    _, _, tx_hash = _paid_then_dropped(env, store, books, ledger_url, tmp_path)

    found = _reconcile(env, ledger_url, tmp_path)
    assert found.code == 1 and "Traceback" not in found.stderr
    assert _missing(found.json(), tx_hash)["resolution"] is None

    # Unused and still valid: it may yet be executed, so nothing is guessed.
    waiting = _in_process(env, books, resolve=True)
    (item,) = waiting.unresolved_breaks
    assert "may still be executed" in item.detail and item.resolution is None
    assert [r.action for r in waiting.resolutions] == ["unresolved"]
    assert _revenue_balance(books, env.merchant) == PRICE_ATOMIC

    env.chain.advance_time(600)  # past validBefore on the chain's clock
    reversed_ = _reconcile(env, ledger_url, tmp_path, "--resolve")
    assert reversed_.code == 0, reversed_.stdout
    assert _missing(reversed_.json(), tx_hash)["resolution"] == "reverse"
    (resolution,) = reversed_.json()["resolutions"]
    assert resolution["action"] == "reverse" and resolution["result"] == "ok"

    # Ledger = chain: nothing moved, nothing booked; and a rerun changes nothing.
    assert _revenue_balance(books, env.merchant) == 0
    _books_balance(books)
    again = _in_process(env, books, resolve=True)
    assert again.breaks == () and again.resolutions == ()
    with books.database.read() as session:
        assert verify(session=session).ok


def test_a_dropped_settlement_executed_again_is_rebooked_once_and_never_charged_twice(
    env: ChainEnv, store: PaymentStore, books: LedgerRevenueBook, ledger_url: str, tmp_path: Path
) -> None:
    payer, header, tx_hash = _paid_then_dropped(env, store, books, ledger_url, tmp_path)
    payload = decode_payment_signature(header)
    requirements = PaymentRequirements.from_wire(
        challenge_of(Paywall(env, store, env.chain, books).get())["accepts"][0]
    )
    # The authorization is still valid: another relayer resubmits it, once.
    other = env.chain.dev_accounts()[5].signer()
    again = LocalFacilitator(env.chain, other).settle_sync(payload, requirements)  # type: ignore[arg-type]
    assert again.success and again.transaction != tx_hash
    twice = LocalFacilitator(env.chain, env.relayer).settle_sync(payload, requirements)  # type: ignore[arg-type]
    assert not twice.success and twice.reason == "nonce_already_used"
    assert env.token.balance_of(payer.address) == PAYER_FUNDS - PRICE_ATOMIC

    # The books name the dropped hash, the chain the new one: two sides of one break.
    found = {b.kind: b for b in _in_process(env, books).breaks}
    assert set(found) == {"missing_on_chain", "missing_in_ledger"}
    assert found["missing_on_chain"].resolution == "rebook"
    assert found["missing_in_ledger"].tx_hash == again.transaction.lower()
    rebooked = _reconcile(env, ledger_url, tmp_path, "--resolve")
    assert rebooked.code == 0, rebooked.stdout
    (resolution,) = rebooked.json()["resolutions"]
    assert resolution["action"] == "rebook" and resolution["tx_hash"] == again.transaction.lower()

    assert _revenue_balance(books, env.merchant) == PRICE_ATOMIC  # booked once, on the new hash
    _books_balance(books)
    clean = _in_process(env, books, resolve=True)
    assert clean.breaks == () and clean.resolutions == ()
