"""The audit log: every ledger event, hash-chained, written with the event.

Each entry's ``hash`` is sha256 over a canonical serialisation of its
sequence number, timestamp, kind, subject, payload and the previous entry's
hash, so changing any entry changes every hash after it. Sequence numbers are
gapless, and the single ``ledger_audit_head`` row names the last entry, so a
deleted entry (even the last one) shows up as a gap or a short chain.

Entries are appended inside the caller's database transaction, after the
write lock is taken, so the log commits exactly when the books do and two
writers can never fork the chain.

The payload's canonical form is JSON with sorted keys, no spaces, ASCII
only, and integers written as decimal strings so that 128-bit ids survive any
reader. ``entry_hash`` frames the other fields one per line before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from farthing.ledger.bulk import insert_rows
from farthing.ledger.tables import AuditEntry, AuditHead, table_of

__all__ = ["GENESIS_HASH", "canonical_payload", "entry_hash"]

GENESIS_HASH = "0" * 64
HEAD_ID = 1

_entry_table = table_of(AuditEntry)
_head_table = table_of(AuditHead)


def _canonical_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_canonical_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _canonical_value(item) for key, item in value.items()}
    raise TypeError(f"the audit log cannot hold a {type(value).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_payload(payload: Mapping[str, Any]) -> str:
    """The exact text the log stores (and hashes) for an event's payload."""
    keys = tuple(payload)
    order = _KEY_ORDER.get(keys)
    if order is None:
        order = _KEY_ORDER[keys] = tuple(sorted(keys))
    # Payloads are flat rows: ints become decimal strings, None and str stay.
    flat = {}
    for key in order:
        value = payload[key]
        kind = type(value)
        if kind is int:
            flat[key] = str(value)
        elif value is None or kind is str:
            flat[key] = value
        else:
            flat[key] = _canonical_value(value)
    # Keys are already sorted, so sort_keys would only repeat the work.
    return json.dumps(flat, separators=(",", ":"), ensure_ascii=True)


# Rows of one table always have the same keys, so their order is sorted once.
_KEY_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {}


def entry_hash(
    *, prev_hash: str, sequence: int, timestamp_ns: int, kind: str, subject: str, payload: str
) -> str:
    """sha256 of the entry's fields, one per line, payload last.

    Only the payload may contain arbitrary text, and it comes last, so the
    line framing is unambiguous without escaping it a second time.
    """
    header = f"{prev_hash}\n{sequence}\n{timestamp_ns}\n{kind}\n{subject}\n"
    return hashlib.sha256((header + payload).encode("ascii")).hexdigest()


def lock_head(session: Session) -> tuple[int, str]:
    """Take the ledger's write lock and return the chain head (sequence, hash).

    On PostgreSQL this is a row lock on the head row, held to commit. On SQLite
    the no-op UPDATE claims the database's write lock even when the session
    began a deferred database transaction, so correctness never rests on how
    the caller's engine was configured.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(_head_table)
            .where(_head_table.c.id == HEAD_ID)
            .values(sequence=_head_table.c.sequence)
        )
        query = select(_head_table.c.sequence, _head_table.c.hash)
    else:
        query = select(_head_table.c.sequence, _head_table.c.hash).with_for_update()
    row = session.execute(query.where(_head_table.c.id == HEAD_ID)).one_or_none()
    if row is None:
        from farthing.ledger.errors import LedgerSchemaError

        raise LedgerSchemaError(
            "the ledger's audit head row is missing; run `farthing ledger migrate`"
        )
    return int(row.sequence), str(row.hash)


def append(
    session: Session,
    head: tuple[int, str],
    events: Sequence[tuple[str, str, Mapping[str, Any]]],
    *,
    timestamp_ns: int,
) -> tuple[int, str]:
    """Append ``(kind, subject, payload)`` events after ``head``; return the new head."""
    if not events:
        return head
    sequence, prev_hash = head
    rows: list[dict[str, Any]] = []
    for kind, subject, payload in events:
        sequence += 1
        text = canonical_payload(payload)
        digest = entry_hash(
            prev_hash=prev_hash,
            sequence=sequence,
            timestamp_ns=timestamp_ns,
            kind=kind,
            subject=subject,
            payload=text,
        )
        rows.append(
            {
                "sequence": sequence,
                "timestamp_ns": timestamp_ns,
                "kind": kind,
                "subject": subject,
                "payload": text,
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
        prev_hash = digest
    insert_rows(session, _entry_table, rows)
    session.execute(
        update(_head_table)
        .where(_head_table.c.id == HEAD_ID)
        .values(sequence=sequence, hash=prev_hash)
    )
    return sequence, prev_hash
