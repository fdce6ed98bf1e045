"""`verify` finds any row edited or deleted directly in SQL, and passes an untouched ledger.

Each case builds real books on both backends, tampers with one row the way an
attacker with database access would (dropping the immutability triggers
first), and checks the first problem reported names what was touched.
"""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from farthing.ledger import NewTransfer, verify
from farthing.ledger.audit import entry_hash


def _populate(books) -> dict[str, int]:
    books.set_policy(daily_limit=10_000)
    reserve, open_one = books.reserve(300), books.reserve(50)
    plain = NewTransfer(
        id=books.new_id(),
        debit_account_id=books.BUDGET,
        credit_account_id=books.PAYEE_2,
        amount=7,
        ledger=books.LEDGER,
        code=2,
    )
    post = NewTransfer.post(id=books.new_id(), pending_id=reserve.id, amount=200)
    assert books.transfer(reserve, open_one, plain, post) == ["ok"] * 4
    return {"reserve": reserve.id, "open": open_one.id, "plain": plain.id, "post": post.id}


def _hex(value: int) -> str:
    return format(value, "032x")


def _drop_triggers(session) -> None:
    if session.get_bind().dialect.name == "sqlite":
        for name in (
            "transfer_no_update",
            "transfer_no_delete",
            "audit_entry_no_update",
            "audit_entry_no_delete",
        ):
            session.execute(text(f"DROP TRIGGER ledger_{name}"))
    else:
        for table in ("ledger_transfer", "ledger_audit_entry"):
            session.execute(text(f"DROP TRIGGER {table}_immutable ON {table}"))


def _last_sequence(session) -> int:
    return int(session.execute(text("SELECT max(sequence) FROM ledger_audit_entry")).scalar_one())


def _rehash_entry(session, sequence: int) -> None:
    """Edit an entry and recompute its own hash, as a careful attacker would."""
    row = session.execute(
        text(f"SELECT * FROM ledger_audit_entry WHERE sequence = {sequence}")
    ).one()
    payload = row.payload.replace('"amount":"300"', '"amount":"3"')
    digest = entry_hash(prev_hash=row.prev_hash, sequence=row.sequence, timestamp_ns=row.timestamp_ns,
                        kind=row.kind, subject=row.subject, payload=payload)  # fmt: skip
    session.execute(
        text("UPDATE ledger_audit_entry SET payload = :p, hash = :h WHERE sequence = :s"),
        {"p": payload, "h": digest, "s": sequence},
    )


TAMPERING = {
    "entry_payload": (
        lambda s, ids: s.execute(
            text(
                "UPDATE ledger_audit_entry SET payload = replace(payload, '\"300\"', '\"3\"') "
                "WHERE kind = 'transfer_created' AND payload LIKE '%\"300\"%'"
            )
        ),
        "entry_altered",
    ),
    "entry_rehashed": (
        lambda s, ids: _rehash_entry(s, _first_seq_of(s, ids["reserve"])),
        "chain_broken",
    ),
    "entry_deleted": (
        lambda s, ids: s.execute(text("DELETE FROM ledger_audit_entry WHERE sequence = 3")),
        "entry_missing",
    ),
    "last_entry_deleted": (
        lambda s, ids: s.execute(
            text(f"DELETE FROM ledger_audit_entry WHERE sequence = {_last_sequence(s)}")
        ),
        "entry_missing",
    ),
    "head_edited": (
        lambda s, ids: s.execute(text("UPDATE ledger_audit_head SET hash = :h"), {"h": "ab" * 32}),
        "head_mismatch",
    ),
    "transfer_amount": (
        lambda s, ids: s.execute(
            text(f"UPDATE ledger_transfer SET amount = 8 WHERE id = '{_hex(ids['plain'])}'")
        ),
        "transfer_altered",
    ),
    "transfer_deleted": (
        lambda s, ids: s.execute(
            text(f"DELETE FROM ledger_transfer WHERE id = '{_hex(ids['plain'])}'")
        ),
        "transfer_missing",
    ),
    "balance_edited": (
        lambda s, ids: s.execute(
            text(
                f"UPDATE ledger_account SET credits_posted = credits_posted + 1 WHERE id = '{_hex(2)}'"
            )
        ),
        "balance_mismatch",
    ),
    "account_label": (
        lambda s, ids: s.execute(
            text(f"UPDATE ledger_account SET label = 'x' WHERE id = '{_hex(3)}'")
        ),
        "account_altered",
    ),
    "budget_limit": (
        lambda s, ids: s.execute(text("UPDATE ledger_budget SET daily_limit = 99999999")),
        "budget_altered",
    ),
    "pending_deleted": (
        lambda s, ids: s.execute(text("DELETE FROM ledger_pending")),
        "pending_mismatch",
    ),
}


def _first_seq_of(session, transfer_id: int) -> int:
    query = text("SELECT sequence FROM ledger_audit_entry WHERE subject = :s")
    return int(session.execute(query, {"s": f"transfer:{transfer_id}"}).scalar_one())


def test_untouched_ledger_verifies_clean(books) -> None:
    _populate(books)
    with books.db.read() as session:
        report = verify(session=session)
    assert report.ok, report.problems
    assert report.entry_count == _expected_entries() and report.transfer_count == 5


def _expected_entries() -> int:
    # 5 accounts, 2 budget changes, 1 funding transfer, 4 transfers.
    return 5 + 2 + 1 + 4


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampering_is_detected(books, case: str) -> None:
    ids = _populate(books)
    tamper, expected_kind = TAMPERING[case]
    with books.db.write() as session:
        _drop_triggers(session)
        tamper(session, ids)
    with books.db.read() as session:
        report = verify(session=session)
    assert not report.ok
    assert report.first_problem is not None
    assert expected_kind in {p.kind for p in report.problems}, report.problems
    assert report.first_problem.kind == expected_kind, report.problems


def test_the_first_altered_entry_is_named(books) -> None:
    ids = _populate(books)
    sequence = _first_seq_of_session(books, ids["post"])
    with books.db.write() as session:
        _drop_triggers(session)
        session.execute(
            text("UPDATE ledger_audit_entry SET kind = 'x' WHERE sequence = :s"), {"s": sequence}
        )
    with books.db.read() as session:
        first = verify(session=session).first_problem
    assert first is not None and (first.kind, first.sequence) == ("entry_altered", sequence)


def _first_seq_of_session(books, transfer_id: int) -> int:
    with books.db.read() as session:
        return _first_seq_of(session, transfer_id)


def test_canonical_hash_is_stable() -> None:
    # A known answer: the serialisation is part of the on-disk format.
    digest = entry_hash(
        prev_hash="0" * 64, sequence=1, timestamp_ns=2, kind="k", subject="s", payload="{}"
    )
    framed = "0" * 64 + "\n1\n2\nk\ns\n{}"
    assert digest == hashlib.sha256(framed.encode()).hexdigest()
