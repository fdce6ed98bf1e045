"""``verify``: recompute the audit chain and check the books against it.

Three layers, each catching what the one before cannot:

1. **The chain.** Sequence numbers must run 1, 2, 3... without a gap, each
   entry's ``prev_hash`` must be the hash of the entry before, each stored
   hash must equal the recomputed one, and the head row must name the last
   entry. An edited entry fails its own hash; a deleted one leaves a gap (or,
   at the end, a head that points past the chain).
2. **The tables against the chain.** Every transfer row must serialise to
   exactly the payload logged when it was written, and every logged transfer
   must still exist; the same for accounts' fixed fields, budgets and assets.
3. **The balances against a replay.** Replaying the logged transfers must
   give every account's four balances and the set of open pending transfers,
   and Σdebits must equal Σcredits, both posted and pending.

The first problem found is the headline; up to ``problem_count_max`` are kept.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from farthing.ledger.audit import GENESIS_HASH, HEAD_ID, canonical_payload, entry_hash
from farthing.ledger.flags import TransferFlags
from farthing.ledger.tables import (
    Account,
    Asset,
    AuditEntry,
    AuditHead,
    Budget,
    PendingTransfer,
    Transfer,
    table_of,
)

__all__ = ["AuditProblem", "VerifyReport", "verify"]

_entries = table_of(AuditEntry)
_head = table_of(AuditHead)
_transfers = table_of(Transfer)
_accounts = table_of(Account)
_pending = table_of(PendingTransfer)
_budgets = table_of(Budget)
_assets = table_of(Asset)
_ACCOUNT_FIXED = ("id", "ledger", "code", "flags", "user_data_128", "user_data_64",
                  "user_data_32", "label", "timestamp_ns")  # fmt: skip
_BALANCES = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
_PAGE = 5_000


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One thing that does not match; ``kind`` is a snake_case reason."""

    kind: str
    detail: str
    sequence: int | None = None
    subject: str | None = None

    def __str__(self) -> str:
        where = f" at entry {self.sequence}" if self.sequence is not None else ""
        about = f" ({self.subject})" if self.subject else ""
        return f"{self.kind}{where}{about}: {self.detail}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entry_count: int
    transfer_count: int
    account_count: int
    problems: tuple[AuditProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> AuditProblem | None:
        return self.problems[0] if self.problems else None


class _Checker:
    def __init__(self, problem_count_max: int) -> None:
        self.problems: list[AuditProblem] = []
        self.problem_count_max = problem_count_max
        self.transfer_digests: dict[str, bytes] = {}  # subject -> sha256 of logged payload
        self.account_fixed: dict[str, dict[str, Any]] = {}
        self.latest: dict[tuple[str, str], str] = {}  # (kind, subject) -> payload text
        self.balances: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.open_pending: dict[int, tuple[int, int, int]] = {}  # id -> (debit, credit, amount)

    def add(
        self, kind: str, detail: str, sequence: int | None = None, subject: str | None = None
    ) -> None:
        if len(self.problems) < self.problem_count_max:
            self.problems.append(AuditProblem(kind, detail, sequence, subject))

    def replay(self, kind: str, subject: str, payload: dict[str, Any], sequence: int) -> None:
        if kind == "account_created":
            self.account_fixed[subject] = {k: payload.get(k) for k in _ACCOUNT_FIXED}
            return
        # operator_* entries record what people did (farthing.dashboard), discrepancy_*
        # what a counterparty claimed that the chain did not show; they move no money.
        if kind in ("budget_changed", "asset_registered") or kind.startswith(
            ("operator_", "discrepancy_")
        ):
            return
        flags = int(payload["flags"])
        debit, credit = int(payload["debit_account_id"]), int(payload["credit_account_id"])
        amount = int(payload["amount"])
        if flags & TransferFlags.PENDING:
            self.open_pending[int(payload["id"])] = (debit, credit, amount)
            self.balances[debit][0] += amount
            self.balances[credit][2] += amount
            return
        pending_id = payload.get("pending_id")
        if pending_id is None:
            self.balances[debit][1] += amount
            self.balances[credit][3] += amount
            return
        reserved = self.open_pending.pop(int(pending_id), None)
        if reserved is None:
            self.add(
                "replay_failed",
                f"resolves unknown or closed pending {pending_id}",
                sequence,
                subject,
            )
            return
        self.balances[reserved[0]][0] -= reserved[2]
        self.balances[reserved[1]][2] -= reserved[2]
        if flags & TransferFlags.POST_PENDING_TRANSFER:
            self.balances[debit][1] += amount
            self.balances[credit][3] += amount


def verify(*, session: Session, problem_count_max: int = 100) -> VerifyReport:
    """Check the audit chain, the tables against it and the balances; never writes."""
    checker = _Checker(problem_count_max)
    entry_count = _check_chain(session, checker)
    transfer_count = _check_transfers(session, checker)
    account_count = _check_accounts(session, checker)
    _check_latest(session, checker)
    _check_pending(session, checker)
    return VerifyReport(entry_count, transfer_count, account_count, tuple(checker.problems))


def _check_chain(session: Session, checker: _Checker) -> int:
    expected_sequence, prev_hash, count = 1, GENESIS_HASH, 0
    last_sequence = 0
    query = select(_entries).order_by(_entries.c.sequence)
    for entry in session.execute(query.execution_options(yield_per=_PAGE)):
        count += 1
        if entry.sequence != expected_sequence:
            missing = (
                f"{expected_sequence}"
                if entry.sequence == expected_sequence + 1
                else (f"{expected_sequence}..{entry.sequence - 1}")
            )
            checker.add("entry_missing", f"entries {missing} were removed", expected_sequence)
        elif entry.prev_hash != prev_hash:
            checker.add(
                "chain_broken",
                f"prev_hash does not match entry {entry.sequence - 1}; "
                "that entry or this one was altered",
                entry.sequence,
                entry.subject,
            )
        recomputed = entry_hash(
            prev_hash=entry.prev_hash,
            sequence=entry.sequence,
            timestamp_ns=entry.timestamp_ns,
            kind=entry.kind,
            subject=entry.subject,
            payload=entry.payload,
        )
        if recomputed != entry.hash:
            checker.add(
                "entry_altered",
                "its hash does not match its contents",
                entry.sequence,
                entry.subject,
            )
        # Carry on from the stored hash so one edit is reported once.
        prev_hash, expected_sequence, last_sequence = entry.hash, entry.sequence + 1, entry.sequence
        try:
            payload = json.loads(entry.payload)
        except ValueError:
            checker.add("entry_altered", "its payload is not JSON", entry.sequence, entry.subject)
            continue
        if entry.kind.startswith("transfer_"):
            checker.transfer_digests[entry.subject] = hashlib.sha256(
                entry.payload.encode()
            ).digest()
        elif entry.kind in ("budget_changed", "asset_registered"):
            checker.latest[(entry.kind, entry.subject)] = entry.payload
        checker.replay(entry.kind, entry.subject, payload, entry.sequence)
    head = session.execute(select(_head).where(_head.c.id == HEAD_ID)).one_or_none()
    if head is None:
        checker.add("head_missing", "the audit head row was removed")
    elif head.sequence != last_sequence:
        if head.sequence > last_sequence:
            checker.add(
                "entry_missing",
                f"entries after {last_sequence} were removed (head says {head.sequence})",
                last_sequence + 1,
            )
        else:
            checker.add(
                "head_mismatch",
                f"the head names entry {head.sequence}, the chain ends at {last_sequence}",
            )
    elif head.hash != prev_hash:
        checker.add("head_mismatch", "the head's hash is not the last entry's hash", last_sequence)
    return count


def _check_transfers(session: Session, checker: _Checker) -> int:
    seen: set[str] = set()
    count = 0
    query = select(_transfers).order_by(_transfers.c.timestamp_ns)
    for row in session.execute(query.execution_options(yield_per=_PAGE)):
        count += 1
        subject = f"transfer:{row.id}"
        seen.add(subject)
        logged = checker.transfer_digests.get(subject)
        if logged is None:
            checker.add("transfer_unlogged", "the row is not in the audit log", subject=subject)
        elif hashlib.sha256(canonical_payload(dict(row._mapping)).encode()).digest() != logged:
            checker.add("transfer_altered", "the row differs from its audit entry", subject=subject)
    for subject in checker.transfer_digests.keys() - seen:
        checker.add("transfer_missing", "a logged transfer was removed", subject=subject)
    return count


def _check_accounts(session: Session, checker: _Checker) -> int:
    seen: set[str] = set()
    count = 0
    totals = [0, 0, 0, 0]
    for row in session.execute(select(_accounts).execution_options(yield_per=_PAGE)):
        count += 1
        subject = f"account:{row.id}"
        seen.add(subject)
        data = dict(row._mapping)
        logged = checker.account_fixed.get(subject)
        if logged is None:
            checker.add("account_unlogged", "the row is not in the audit log", subject=subject)
        elif canonical_payload({k: data[k] for k in _ACCOUNT_FIXED}) != canonical_payload(logged):
            checker.add(
                "account_altered", "fixed fields differ from the audit entry", subject=subject
            )
        replayed = checker.balances.get(row.id, [0, 0, 0, 0])
        actual = [data[name] for name in _BALANCES]
        if actual != replayed:
            checker.add(
                "balance_mismatch",
                f"balances {actual} but the log replays to {replayed}",
                subject=subject,
            )
        for i, value in enumerate(actual):
            totals[i] += value
    for subject in checker.account_fixed.keys() - seen:
        checker.add("account_missing", "a logged account was removed", subject=subject)
    if totals[0] != totals[2] or totals[1] != totals[3]:
        checker.add(
            "totals_unbalanced",
            f"Σdebits_pending={totals[0]} Σcredits_pending={totals[2]} "
            f"Σdebits_posted={totals[1]} Σcredits_posted={totals[3]}",
        )
    return count


def _check_latest(session: Session, checker: _Checker) -> None:
    current: dict[tuple[str, str], str] = {}
    for row in session.execute(select(_budgets)):
        current[("budget_changed", f"account:{row.account_id}")] = canonical_payload(
            dict(row._mapping)
        )
    for row in session.execute(select(_assets)):
        current[("asset_registered", f"asset:{row.id}")] = canonical_payload(dict(row._mapping))
    for key in sorted(current.keys() | checker.latest.keys()):
        kind = "budget" if key[0] == "budget_changed" else "asset"
        if key not in checker.latest:
            checker.add(f"{kind}_unlogged", "the row is not in the audit log", subject=key[1])
        elif key not in current:
            checker.add(f"{kind}_missing", "a logged row was removed", subject=key[1])
        elif current[key] != checker.latest[key]:
            checker.add(
                f"{kind}_altered", "the row differs from its last audit entry", subject=key[1]
            )


def _check_pending(session: Session, checker: _Checker) -> None:
    stored = {row.transfer_id for row in session.execute(select(_pending.c.transfer_id))}
    replayed = set(checker.open_pending)
    for transfer_id in sorted(stored ^ replayed)[:10]:
        state = (
            "open in the table but closed in the log"
            if transfer_id in stored
            else ("open in the log but missing from the table")
        )
        checker.add("pending_mismatch", state, subject=f"transfer:{transfer_id}")
