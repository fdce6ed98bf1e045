"""Bad input is refused as a value with a reason, bugs raise, and nothing is half-written.

Malformed-but-typed events go through the real repository on both backends
and must come back as snake_case reasons with balances untouched; wrong
types raise at construction; database failures (unreachable, locked, not
migrated) surface as one-line ``LedgerError`` subclasses.
"""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from farthing.ledger import (
    LedgerConfigError,
    LedgerDatabase,
    LedgerDatabaseLocked,
    LedgerDatabaseUnavailable,
    LedgerSchemaError,
    LedgerSettings,
    NewAccount,
    NewTransfer,
    PaymentDetails,
    TransferFlags,
    check_schema,
    create_accounts,
    create_transfers,
    normalise_database_url,
    register_asset,
    upgrade_database,
)

USDC_BASE = "eip155:8453/erc20:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"


def _event(books, **change: object) -> NewTransfer:
    fields: dict[str, object] = {
        "id": books.new_id(),
        "debit_account_id": books.BUDGET,
        "credit_account_id": books.PAYEE,
        "amount": 100,
        "ledger": books.LEDGER,
        "code": 2,
    }
    fields.update(change)
    return NewTransfer(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": 0}, "amount_must_not_be_zero"),
        ({"amount": -5}, "amount_must_not_be_negative"),
        ({"amount": 2**63}, "amount_must_not_exceed_max"),
        ({"credit_account_id": 2}, "accounts_must_be_different"),
        ({"debit_account_id": 999}, "debit_account_not_found"),
        ({"credit_account_id": 999}, "credit_account_not_found"),
        ({"credit_account_id": 5}, "accounts_must_have_the_same_ledger"),
        ({"ledger": 2}, "transfer_must_have_the_same_ledger_as_accounts"),
        ({"id": 0}, "id_must_not_be_zero"),
        ({"id": 2**128 - 1}, "id_must_not_be_int_max"),
        ({"code": 0}, "code_must_not_be_zero"),
        ({"ledger": 0}, "ledger_must_not_be_zero"),
        ({"pending_id": 7}, "pending_id_must_be_zero"),
        ({"timeout_s": 5}, "timeout_reserved_for_pending_transfer"),
        ({"flags": TransferFlags.EXPIRE_PENDING_TRANSFER}, "reserved_flag"),
        (
            {"flags": TransferFlags.PENDING | TransferFlags.POST_PENDING_TRANSFER},
            "flags_are_mutually_exclusive",
        ),
        (
            {"payment": PaymentDetails(network="eip155:8453", token_address="0x" + "11" * 20)},
            "asset_not_found",
        ),
        ({"amount": 1_000_001}, "exceeds_budget"),
    ],
)
def test_refusals_are_values_and_change_nothing(
    books, change: dict[str, object], reason: str
) -> None:
    assert books.transfer(_event(books, **change)) == [reason]
    assert books.balances(books.BUDGET) == (0, 0, 0, 1_000_000)
    assert books.balances(books.PAYEE) == (0, 0, 0, 0)


def test_asset_on_another_ledger_is_a_currency_mismatch(books) -> None:
    with books.db.write() as session:
        assert (
            register_asset(session=session, asset_id=USDC_BASE, ledger=2, decimals=6, symbol="EURC")
            == "ok"
        )
    network, _, token = USDC_BASE.partition("/erc20:")
    event = _event(books, payment=PaymentDetails(network=network, token_address=token))
    assert books.transfer(event) == ["asset_must_have_the_same_ledger_as_transfer"]


@pytest.mark.parametrize(
    ("make_post", "reason"),
    [
        (
            lambda r, i: NewTransfer.post(id=i, pending_id=r.id, amount=301),
            "exceeds_pending_transfer_amount",
        ),
        (lambda r, i: NewTransfer.post(id=i, pending_id=r.id, amount=0), "amount_must_not_be_zero"),
        (
            lambda r, i: NewTransfer.post(id=i, pending_id=r.id, amount=-1),
            "amount_must_not_be_negative",
        ),
        (lambda r, i: NewTransfer.post(id=i, pending_id=12345), "pending_transfer_not_found"),
        (lambda r, i: NewTransfer.post(id=i, pending_id=i), "pending_id_must_be_different"),
        (
            lambda r, i: NewTransfer(
                id=i, pending_id=r.id, flags=TransferFlags.VOID_PENDING_TRANSFER, amount=5
            ),
            "pending_transfer_has_different_amount",
        ),
        (
            lambda r, i: NewTransfer(
                id=i, pending_id=r.id, debit_account_id=1, flags=TransferFlags.POST_PENDING_TRANSFER
            ),
            "pending_transfer_has_different_debit_account_id",
        ),
    ],
)
def test_bad_posts_are_refused(books, make_post, reason: str) -> None:
    reserve = books.reserve(300)
    assert books.transfer(reserve) == ["ok"]
    assert books.transfer(make_post(reserve, books.new_id())) == [reason]
    assert books.balances(books.BUDGET) == (300, 0, 0, 1_000_000)


def test_posting_a_single_phase_transfer_is_refused(books) -> None:
    plain = _event(books)
    assert books.transfer(plain) == ["ok"]
    post = NewTransfer.post(id=books.new_id(), pending_id=plain.id)
    assert books.transfer(post) == ["pending_transfer_not_pending"]


@pytest.mark.parametrize("amount", [1.5, True, "100"])
def test_a_non_int_amount_is_a_bug_and_raises(amount: object) -> None:
    with pytest.raises(TypeError):
        NewTransfer(id=1, debit_account_id=1, credit_account_id=2, amount=amount, ledger=1, code=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payment",
    [
        {"tx_hash": "0x1234"},
        {"authorization_nonce": "0x" + "zz" * 32},
        {"payee_address": "0xabc"},
        {"network": "base"},
        {"fiat_rate": "seven"},
        {"fiat_rate": 7.1},
        {"valid_before": -1},
    ],
)
def test_malformed_payment_facts_raise(payment: dict[str, object]) -> None:
    with pytest.raises((TypeError, ValueError)):
        PaymentDetails(**payment)  # type: ignore[arg-type]


def test_account_refusals(database) -> None:
    with database.write() as session:
        results = create_accounts(
            session=session,
            accounts=[
                NewAccount(id=0, ledger=1, code=1),
                NewAccount(id=9, ledger=0, code=1),
                NewAccount(id=9, ledger=1, code=0),
                NewAccount(id=9, ledger=1, code=1, flags=6),  # type: ignore[arg-type]
                NewAccount(id=9, ledger=1, code=1),
                NewAccount(id=9, ledger=1, code=1),
                NewAccount(id=9, ledger=2, code=1),
            ],
        )
    assert [str(r) for r in results] == [
        "id_must_not_be_zero",
        "ledger_must_not_be_zero",
        "code_must_not_be_zero",
        "flags_are_mutually_exclusive",
        "ok",
        "exists",
        "exists_with_different_ledger",
    ]


def test_an_error_mid_batch_writes_neither_leg(books) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), books.db.write() as session:
        results = create_transfers(session=session, transfers=[books.reserve(300)])
        assert [str(r) for r in results] == ["ok"]
        raise Boom
    assert books.balances(books.BUDGET) == (0, 0, 0, 1_000_000)
    with books.db.read() as session:
        count = session.execute(text("SELECT count(*) FROM ledger_transfer WHERE amount = 300"))
        assert count.scalar_one() == 0


def test_unreachable_postgres_is_one_clear_error() -> None:
    settings = LedgerSettings(
        database_url="postgresql://nobody@127.0.0.1:1/none", connect_timeout_s=2
    )
    with pytest.raises(
        LedgerDatabaseUnavailable, match="cannot reach the ledger database at postgresql"
    ):
        upgrade_database(LedgerDatabase(settings))


def test_missing_sqlite_file_is_one_clear_error(tmp_path) -> None:
    settings = LedgerSettings(database_url=f"sqlite:///{tmp_path}/absent.sqlite")
    with pytest.raises(LedgerDatabaseUnavailable, match="no ledger database at"):
        LedgerDatabase(settings, must_exist=True)
    assert not (tmp_path / "absent.sqlite").exists()


def test_unmigrated_database_is_a_schema_error(tmp_path) -> None:
    database = LedgerDatabase(LedgerSettings(data_dir=tmp_path))
    with pytest.raises(LedgerSchemaError, match="farthing ledger migrate"):
        check_schema(database)
    with pytest.raises(LedgerSchemaError), database.write() as session:
        create_transfers(
            session=session,
            transfers=[
                NewTransfer(
                    id=1, debit_account_id=1, credit_account_id=2, amount=1, ledger=1, code=1
                )
            ],
        )


def test_locked_sqlite_waits_then_fails_clearly(tmp_path) -> None:
    settings = LedgerSettings(data_dir=tmp_path, busy_timeout_s=0.2)
    database = LedgerDatabase(settings)
    upgrade_database(database)
    holder = sqlite3.connect(settings.sqlite_path(), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            pytest.raises(LedgerDatabaseLocked, match="locked by another writer"),
            database.write() as session,
        ):
            create_accounts(session=session, accounts=[NewAccount(id=1, ledger=1, code=1)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with database.write() as session:  # and works once the lock is gone
        assert [
            str(r)
            for r in create_accounts(session=session, accounts=[NewAccount(id=1, ledger=1, code=1)])
        ] == ["ok"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.sqlite", "sqlite:///x.sqlite"),
    ],
)
def test_database_urls_are_normalised(url: str, expected: str) -> None:
    assert normalise_database_url(url).render_as_string() == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"])
def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(LedgerConfigError):
        normalise_database_url(url)


def test_password_never_appears_in_errors() -> None:
    settings = LedgerSettings(
        database_url="postgresql://u:hunter2@127.0.0.1:1/x", connect_timeout_s=1
    )
    with pytest.raises(LedgerDatabaseUnavailable) as caught:
        upgrade_database(LedgerDatabase(settings))
    assert "hunter2" not in str(caught.value)
