"""Two-phase transfers follow TigerBeetle: reserve, then post (fully or partly), void or expire.

Each case drives the real repository against a migrated SQLite file and a
PostgreSQL schema, and checks results (values with snake_case reasons) and
the four balances of both accounts after every step.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from farthing.errors import InvariantError
from farthing.ledger import (
    NewTransfer,
    PaymentDetails,
    TransferFlags,
    create_transfers,
    expire_pending,
    lookup_transfers,
    release_payment,
    reserve_payment,
    resolution_id,
    settle_payment,
)

NOW = 1_750_000_000 * 10**9


def test_pending_then_full_post_moves_reserved_to_posted(books) -> None:
    reserve = books.reserve(300)
    assert books.transfer(reserve) == ["ok"]
    assert books.balances(books.BUDGET) == (300, 0, 0, 1_000_000)
    assert books.balances(books.PAYEE) == (0, 0, 300, 0)
    assert books.transfer(NewTransfer.post(id=books.new_id(), pending_id=reserve.id)) == ["ok"]
    assert books.balances(books.BUDGET) == (0, 300, 0, 1_000_000)
    assert books.balances(books.PAYEE) == (0, 0, 0, 300)


def test_partial_post_releases_the_remainder(books) -> None:
    reserve = books.reserve(300)
    post = NewTransfer.post(id=books.new_id(), pending_id=reserve.id, amount=120)
    assert books.transfer(reserve, post) == ["ok", "ok"]
    assert books.balances(books.BUDGET) == (0, 120, 0, 1_000_000)
    assert books.balances(books.PAYEE) == (0, 0, 0, 120)


def test_void_releases_everything_and_blocks_a_later_post(books) -> None:
    reserve = books.reserve(300)
    void = NewTransfer.void(id=books.new_id(), pending_id=reserve.id)
    post = NewTransfer.post(id=books.new_id(), pending_id=reserve.id)
    assert books.transfer(reserve, void, post) == ["ok", "ok", "pending_transfer_already_voided"]
    assert books.balances(books.BUDGET) == (0, 0, 0, 1_000_000)


def test_second_post_is_refused(books) -> None:
    reserve = books.reserve(300)
    books.transfer(reserve)
    first = NewTransfer.post(id=books.new_id(), pending_id=reserve.id)
    second = NewTransfer.post(id=books.new_id(), pending_id=reserve.id)
    assert books.transfer(first) == ["ok"]
    assert books.transfer(second) == ["pending_transfer_already_posted"]
    void = NewTransfer.void(id=books.new_id(), pending_id=reserve.id)
    assert books.transfer(void) == ["pending_transfer_already_posted"]


def test_expiry_sweep_releases_and_later_post_is_refused(books) -> None:
    reserve = books.reserve(300, timeout_s=60)
    assert books.transfer(reserve, now_ns=NOW) == ["ok"]
    with books.db.write() as session:
        assert expire_pending(session=session, now_ns=NOW + 59 * 10**9) == []
    # Past the timeout but before the sweep: a post is already refused.
    late = NewTransfer.post(id=books.new_id(), pending_id=reserve.id)
    assert books.transfer(late, now_ns=NOW + 61 * 10**9) == ["pending_transfer_expired"]
    with books.db.write() as session:
        assert expire_pending(session=session, now_ns=NOW + 61 * 10**9) == [reserve.id]
    assert books.balances(books.BUDGET) == (0, 0, 0, 1_000_000)
    assert books.transfer(late, now_ns=NOW + 62 * 10**9) == ["pending_transfer_expired"]
    with books.db.read() as session:
        kinds = session.execute(
            text("SELECT flags FROM ledger_transfer WHERE pending_id IS NOT NULL")
        )
        assert [row.flags for row in kinds] == [TransferFlags.EXPIRE_PENDING_TRANSFER]


def test_pending_without_timeout_never_expires(books) -> None:
    books.transfer(books.reserve(300), now_ns=NOW)
    with books.db.write() as session:
        assert expire_pending(session=session, now_ns=NOW + 10**18) == []


def test_retry_with_same_id_is_exists_and_changes_nothing(books) -> None:
    reserve = books.reserve(300)
    assert books.transfer(reserve) == ["ok"]
    assert books.transfer(reserve) == ["exists"]
    assert books.balances(books.BUDGET) == (300, 0, 0, 1_000_000)
    post = NewTransfer.post(id=books.new_id(), pending_id=reserve.id, amount=100)
    assert books.transfer(post, post) == ["ok", "exists"]
    assert books.balances(books.BUDGET) == (0, 100, 0, 1_000_000)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": 301}, "exists_with_different_amount"),
        ({"debit_account_id": 1}, "exists_with_different_debit_account_id"),
        ({"credit_account_id": 4}, "exists_with_different_credit_account_id"),
        ({"flags": TransferFlags.NONE, "timeout_s": 0}, "exists_with_different_flags"),
        ({"timeout_s": 5}, "exists_with_different_timeout"),
        ({"code": 9}, "exists_with_different_code"),
        ({"user_data_64": 7}, "exists_with_different_user_data_64"),
        ({"payment": PaymentDetails(resource="/other")}, "exists_with_different_payment"),
    ],
)
def test_retry_with_a_different_field_names_it(
    books, change: dict[str, object], reason: str
) -> None:
    original = books.reserve(300)
    assert books.transfer(original) == ["ok"]
    fields = {
        "id": original.id,
        "debit_account_id": original.debit_account_id,
        "credit_account_id": original.credit_account_id,
        "amount": original.amount,
        "ledger": original.ledger,
        "code": original.code,
        "flags": original.flags,
        "timeout_s": original.timeout_s,
    }
    fields.update(change)
    assert books.transfer(NewTransfer(**fields)) == [reason]  # type: ignore[arg-type]


def test_balancing_debit_moves_at_most_what_is_left(books) -> None:
    event = NewTransfer(
        id=books.new_id(),
        debit_account_id=books.BUDGET,
        credit_account_id=books.PAYEE,
        amount=5_000_000,
        ledger=books.LEDGER,
        code=2,
        flags=TransferFlags.BALANCING_DEBIT,
    )
    assert books.transfer(event) == ["ok"]
    assert books.balances(books.BUDGET) == (0, 1_000_000, 0, 1_000_000)
    again = NewTransfer(**{**{f: getattr(event, f) for f in event.__slots__}, "id": books.new_id()})
    assert books.transfer(again) == ["exceeds_budget"]


def test_payment_helpers_use_derived_resolution_ids(books) -> None:
    payment_id = books.new_id()
    details = PaymentDetails(
        network="eip155:8453",
        payee_address="0x" + "AB" * 20,
        resource="/reports/1",
        valid_before=int(time.time()) + 300,
        fiat_rate="7.1234",
    )
    with books.db.write() as session:
        reserved = reserve_payment(
            session=session,
            payment_id=payment_id,
            budget_account_id=books.BUDGET,
            payee_account_id=books.PAYEE,
            amount=10_000,
            ledger=books.LEDGER,
            payment=details,
        )
    assert reserved == "ok"
    settlement = PaymentDetails(tx_hash="0x" + "12" * 32, block_number=7)
    with books.db.write() as session:
        assert settle_payment(session=session, payment_id=payment_id, payment=settlement) == "ok"
        assert (
            settle_payment(session=session, payment_id=payment_id, payment=settlement) == "exists"
        )
        assert (
            release_payment(session=session, payment_id=payment_id) == "exists_with_different_flags"
        )
    with books.db.read() as session:
        (post,) = lookup_transfers(session=session, ids=[resolution_id(payment_id)])
    # The post carries its settlement and inherits the reservation's facts.
    assert (post.tx_hash, post.resource, post.payee_address) == (
        "0x" + "12" * 32,
        "/reports/1",
        "0x" + "ab" * 20,
    )
    assert post.fiat_rate == "7.1234" and post.amount == 10_000


def test_transfers_cannot_be_changed_through_the_orm_or_sql(books) -> None:
    reserve = books.reserve(300)
    books.transfer(reserve)
    with pytest.raises(InvariantError), books.db.write() as session:
        (row,) = lookup_transfers(session=session, ids=[reserve.id])
        row.amount = 1
        session.flush()
    with pytest.raises(Exception, match="immutable"), books.db.write() as session:
        session.execute(text("UPDATE ledger_transfer SET amount = 1"))
    with pytest.raises(Exception, match="immutable"), books.db.write() as session:
        session.execute(text("DELETE FROM ledger_audit_entry"))
    assert books.balances(books.BUDGET) == (300, 0, 0, 1_000_000)


def test_a_batch_sees_its_own_earlier_events(books) -> None:
    reserve = books.reserve(100)
    with books.db.write() as session:
        results = create_transfers(
            session=session,
            transfers=[
                reserve,
                NewTransfer.post(id=books.new_id(), pending_id=reserve.id, amount=40),
                books.reserve(999_950),  # 1,000,000 - 40 posted leaves 999,960: this fits
                books.reserve(11),  # and this no longer does
            ],
        )
    assert [str(r) for r in results] == ["ok", "ok", "ok", "exceeds_budget"]
