"""The rules of double entry, applied to one batch in memory.

``Books`` holds the slice of the ledger a batch touches: the repository loads
it while holding the write lock, applies every event in order here, and then
writes what changed. Keeping the rules free of I/O is what lets a batch of a
thousand payments cost a handful of statements, the way a TigerBeetle batch
does, and lets the rules be read top to bottom in one place.

An event that does not fit returns a result value and changes nothing; an
event that fits updates the balances, the pending set and the budget usage,
and queues its row and its audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from farthing.invariant import invariant
from farthing.ledger.budget import TOTAL_PAYEE, BudgetPolicy, asset_allowed, headroom, hour_of
from farthing.ledger.columns import AMOUNT_MAX, ID_MAX
from farthing.ledger.flags import (
    CLIENT_ACCOUNT_FLAGS,
    AccountFlags,
    TransferFlags,
)
from farthing.ledger.inputs import PAYMENT_COLUMNS, NewAccount, NewTransfer
from farthing.ledger.results import CreateAccountResult, CreateTransferResult
from farthing.ledger.validation import compare_existing, validate

__all__ = ["Balance", "Books"]

R = CreateTransferResult
TF = TransferFlags
NS_PER_S = 1_000_000_000
_DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
_CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
# Plain ints: IntFlag arithmetic is slow enough to show up on the hot path.
_PENDING = int(TF.PENDING)
_POST = int(TF.POST_PENDING_TRANSFER)
_VOID = int(TF.VOID_PENDING_TRANSFER)
_RESOLVE = _POST | _VOID
_KIND_FLAGS = _PENDING | _RESOLVE
_BALANCING_DEBIT = int(TF.BALANCING_DEBIT)
_BALANCING_CREDIT = int(TF.BALANCING_CREDIT)
_DMNEC_INT = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED_INT = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_AUDIT_KIND = {
    TF.POST_PENDING_TRANSFER: "transfer_posted",
    TF.VOID_PENDING_TRANSFER: "transfer_voided",
    TF.EXPIRE_PENDING_TRANSFER: "transfer_expired",
}
_ABSENT: Any = object()
_ALREADY = {
    TF.POST_PENDING_TRANSFER: R.PENDING_TRANSFER_ALREADY_POSTED,
    TF.VOID_PENDING_TRANSFER: R.PENDING_TRANSFER_ALREADY_VOIDED,
    TF.EXPIRE_PENDING_TRANSFER: R.PENDING_TRANSFER_EXPIRED,
}


@dataclass(slots=True)
class Balance:
    """A working copy of one account: its identity and four balances."""

    id: int
    ledger: int
    flags: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    def check(self) -> None:
        invariant(
            min(self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)
            >= 0,
            f"account {self.id} has a negative balance",
        )
        invariant(
            not self.flags & _DMNEC
            or self.debits_pending + self.debits_posted <= self.credits_posted,
            f"account {self.id} debits exceed its credits",
        )
        invariant(
            not self.flags & _CMNED
            or self.credits_pending + self.credits_posted <= self.debits_posted,
            f"account {self.id} credits exceed its debits",
        )


AuditEvent = tuple[str, str, dict[str, Any]]  # (kind, subject, payload)


@dataclass
class Books:
    """The part of the ledger one batch reads and writes."""

    accounts: dict[int, Balance] = field(default_factory=dict)
    account_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[int, dict[str, Any]] = field(default_factory=dict)
    open_pending: dict[int, int | None] = field(default_factory=dict)
    resolutions: dict[int, int] = field(default_factory=dict)  # pending id -> resolving flags
    budgets: dict[int, BudgetPolicy] = field(default_factory=dict)
    usage: dict[int, dict[tuple[int, int], int]] = field(default_factory=dict)
    usage_floor_hour: int = 0
    usage_loaded: set[tuple[int, int, int]] = field(default_factory=set)
    assets: dict[str, int] = field(default_factory=dict)  # CAIP-19 id -> ledger
    # What the batch changed, for the repository to write.
    new_accounts: list[dict[str, Any]] = field(default_factory=list)
    new_transfers: list[dict[str, Any]] = field(default_factory=list)
    dirty_accounts: set[int] = field(default_factory=set)
    pending_added: dict[int, int | None] = field(default_factory=dict)
    pending_removed: set[int] = field(default_factory=set)
    usage_dirty: set[tuple[int, int, int]] = field(default_factory=set)
    audit_events: list[AuditEvent] = field(default_factory=list)

    # Accounts ------------------------------------------------------------

    def create_account(self, event: NewAccount, timestamp_ns: int) -> CreateAccountResult:
        A = CreateAccountResult
        if event.id == 0:
            return A.ID_MUST_NOT_BE_ZERO
        if event.id > ID_MAX:
            return A.ID_MUST_NOT_BE_INT_MAX
        if event.flags & ~CLIENT_ACCOUNT_FLAGS:
            return A.RESERVED_FLAG
        if event.flags & _DMNEC and event.flags & _CMNED:
            return A.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if event.ledger == 0:
            return A.LEDGER_MUST_NOT_BE_ZERO
        if event.code == 0:
            return A.CODE_MUST_NOT_BE_ZERO
        existing = self.account_rows.get(event.id)
        if existing is not None:
            for name, reason in (
                ("flags", A.EXISTS_WITH_DIFFERENT_FLAGS),
                ("user_data_128", A.EXISTS_WITH_DIFFERENT_USER_DATA_128),
                ("user_data_64", A.EXISTS_WITH_DIFFERENT_USER_DATA_64),
                ("user_data_32", A.EXISTS_WITH_DIFFERENT_USER_DATA_32),
                ("ledger", A.EXISTS_WITH_DIFFERENT_LEDGER),
                ("code", A.EXISTS_WITH_DIFFERENT_CODE),
                ("label", A.EXISTS_WITH_DIFFERENT_LABEL),
            ):
                if existing[name] != getattr(event, name):
                    return reason
            return A.EXISTS
        row: dict[str, Any] = {
            "id": event.id,
            "ledger": event.ledger,
            "code": event.code,
            "flags": int(event.flags),
            "debits_pending": 0,
            "debits_posted": 0,
            "credits_pending": 0,
            "credits_posted": 0,
            "user_data_128": event.user_data_128,
            "user_data_64": event.user_data_64,
            "user_data_32": event.user_data_32,
            "label": event.label,
            "timestamp_ns": timestamp_ns,
        }
        self.account_rows[event.id] = row
        self.new_accounts.append(row)
        self.audit_events.append(("account_created", f"account:{event.id}", row))
        return A.OK

    # Transfers -----------------------------------------------------------

    def create_transfer(self, event: NewTransfer, timestamp_ns: int) -> CreateTransferResult:
        reason = validate(event)
        if reason is not None:
            return reason
        existing = self.transfers.get(event.id)
        if existing is not None:
            return compare_existing(event, existing)
        if int(event.flags) & _RESOLVE:
            return self._resolve(event, timestamp_ns, TF(int(event.flags) & _KIND_FLAGS))
        return self._create(event, timestamp_ns)

    def expire(self, *, id: int, pending_id: int, timestamp_ns: int) -> CreateTransferResult:
        """Release a pending transfer whose timeout has passed (the sweep's event)."""
        event = NewTransfer(id=id, pending_id=pending_id)
        return self._resolve(event, timestamp_ns, TF.EXPIRE_PENDING_TRANSFER)

    def _create(self, event: NewTransfer, timestamp_ns: int) -> CreateTransferResult:
        debit = self.accounts.get(event.debit_account_id)
        if debit is None:
            return R.DEBIT_ACCOUNT_NOT_FOUND
        credit = self.accounts.get(event.credit_account_id)
        if credit is None:
            return R.CREDIT_ACCOUNT_NOT_FOUND
        if debit.ledger != credit.ledger:
            return R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if event.ledger != debit.ledger:
            return R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        asset_id = event.payment.asset_id
        reason = self._check_asset(asset_id, event.ledger)
        if reason is not None:
            return reason
        policy = self.budgets.get(debit.id)
        if policy is not None and not asset_allowed(policy, asset_id):
            return R.ASSET_NOT_ALLOWED

        flags = int(event.flags)
        pending = bool(flags & _PENDING)
        amount = event.amount
        invariant(amount is not None and amount > 0, "validated amount is positive")
        assert amount is not None  # for the type checker; invariant() above is the real check
        hour = hour_of(timestamp_ns)
        debit_room: list[tuple[CreateTransferResult, int]] = []
        if debit.flags & _DMNEC_INT:
            available = debit.credits_posted - debit.debits_pending - debit.debits_posted
            limit_reason = R.EXCEEDS_BUDGET if policy is not None else R.EXCEEDS_CREDITS
            debit_room.append((limit_reason, max(0, available)))
        if policy is not None:
            usage = self.usage.setdefault(debit.id, {})
            debit_room.extend(headroom(policy, usage, payee=credit.id, hour=hour))
        credit_room: list[tuple[CreateTransferResult, int]] = []
        if credit.flags & _CMNED_INT:
            available = credit.debits_posted - credit.credits_pending - credit.credits_posted
            credit_room.append((R.EXCEEDS_DEBITS, max(0, available)))
        # Balancing transfers move "at most amount": clamp to the tightest limit.
        if flags & _BALANCING_DEBIT:
            amount = min([amount, *(room for _, room in debit_room)])
        if flags & _BALANCING_CREDIT:
            amount = min([amount, *(room for _, room in credit_room)])

        if pending:
            if debit.debits_pending + amount > AMOUNT_MAX:
                return R.OVERFLOWS_DEBITS_PENDING
            if credit.credits_pending + amount > AMOUNT_MAX:
                return R.OVERFLOWS_CREDITS_PENDING
        else:
            if debit.debits_posted + amount > AMOUNT_MAX:
                return R.OVERFLOWS_DEBITS_POSTED
            if credit.credits_posted + amount > AMOUNT_MAX:
                return R.OVERFLOWS_CREDITS_POSTED
        if debit.debits_pending + debit.debits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS
        if credit.credits_pending + credit.credits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS
        expires_at_ns: int | None = None
        if pending and event.timeout_s > 0:
            expires_at_ns = timestamp_ns + event.timeout_s * NS_PER_S
            if expires_at_ns > AMOUNT_MAX:
                return R.OVERFLOWS_TIMEOUT
        rooms = (*debit_room, *credit_room)
        if amount == 0:  # a balancing transfer with nothing left to move
            return next(limit_reason for limit_reason, room in rooms if room == 0)
        for limit_reason, room in rooms:
            if amount > room:
                return limit_reason

        if pending:
            debit.debits_pending += amount
            credit.credits_pending += amount
            self.pending_added[event.id] = expires_at_ns
            self.open_pending[event.id] = expires_at_ns
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        if policy is not None:
            self._add_usage(debit.id, credit.id, hour, amount)
        self._touch(debit, credit)
        row = _row(event, timestamp_ns, amount=amount, expires_at_ns=expires_at_ns)
        self._record(row, "transfer_created")
        return R.OK

    def _resolve(
        self, event: NewTransfer, timestamp_ns: int, kind: TransferFlags
    ) -> CreateTransferResult:
        pending = self.transfers.get(event.pending_id)
        if pending is None:
            return R.PENDING_TRANSFER_NOT_FOUND
        if not pending["flags"] & _PENDING:
            return R.PENDING_TRANSFER_NOT_PENDING
        for name, reason in (
            ("debit_account_id", R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID),
            ("credit_account_id", R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID),
            ("ledger", R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER),
            ("code", R.PENDING_TRANSFER_HAS_DIFFERENT_CODE),
        ):
            given = getattr(event, name)
            if given and given != pending[name]:
                return reason
        asset_reason = self._check_asset(event.payment.asset_id, pending["ledger"])
        if asset_reason is not None:
            return asset_reason
        resolved_by = self.resolutions.get(event.pending_id)
        if resolved_by is not None:
            return _ALREADY[TF(resolved_by)]
        invariant(event.pending_id in self.open_pending, "an unresolved pending transfer is open")
        expires_at_ns = self.open_pending[event.pending_id]
        if kind is not TF.EXPIRE_PENDING_TRANSFER and (
            expires_at_ns is not None and expires_at_ns <= timestamp_ns
        ):
            return R.PENDING_TRANSFER_EXPIRED

        reserved: int = pending["amount"]
        if kind is TF.POST_PENDING_TRANSFER:
            amount = reserved if event.amount is None else event.amount
            if amount > reserved:
                return R.EXCEEDS_PENDING_TRANSFER_AMOUNT
        else:
            if event.amount is not None and event.amount != reserved:
                return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
            amount = reserved
        debit = self.accounts[pending["debit_account_id"]]
        credit = self.accounts[pending["credit_account_id"]]
        posted = amount if kind is TF.POST_PENDING_TRANSFER else 0
        if debit.debits_posted + posted > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS_POSTED
        if credit.credits_posted + posted > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS_POSTED

        debit.debits_pending -= reserved
        credit.credits_pending -= reserved
        debit.debits_posted += posted
        credit.credits_posted += posted
        if debit.id in self.budgets and reserved > posted:
            self._add_usage(
                debit.id, credit.id, hour_of(pending["timestamp_ns"]), posted - reserved
            )
        self._touch(debit, credit)
        del self.open_pending[event.pending_id]
        if self.pending_added.pop(event.pending_id, _ABSENT) is _ABSENT:
            # Written in an earlier batch, so its row must be deleted.
            self.pending_removed.add(event.pending_id)
        self.resolutions[event.pending_id] = int(kind)
        row = _row(event, timestamp_ns, amount=amount, expires_at_ns=None)
        row["flags"] = int(kind)
        for name in ("debit_account_id", "credit_account_id", "ledger", "code"):
            row[name] = pending[name]
        for name in ("user_data_128", "user_data_64", "user_data_32"):
            row[name] = row[name] or pending[name]
        for name in PAYMENT_COLUMNS:
            if row[name] is None:
                row[name] = pending[name]
        self._record(row, _AUDIT_KIND[kind])
        return R.OK

    # Helpers -------------------------------------------------------------

    def _check_asset(self, asset_id: str | None, ledger: int) -> CreateTransferResult | None:
        if asset_id is None:
            return None
        asset_ledger = self.assets.get(asset_id)
        if asset_ledger is None:
            return R.ASSET_NOT_FOUND
        if asset_ledger != ledger:
            return R.ASSET_MUST_HAVE_THE_SAME_LEDGER_AS_TRANSFER
        return None

    def _add_usage(self, account_id: int, payee_id: int, hour: int, delta: int) -> None:
        # Buckets older than the loaded window can no longer affect a limit.
        if hour < self.usage_floor_hour:
            return
        usage = self.usage.setdefault(account_id, {})
        for payee in (TOTAL_PAYEE, payee_id):
            # Clamped at zero: a reservation made before the budget existed
            # was never counted, so releasing it must not count negative.
            usage[(payee, hour)] = max(0, usage.get((payee, hour), 0) + delta)
            self.usage_dirty.add((account_id, payee, hour))

    def _touch(self, debit: Balance, credit: Balance) -> None:
        # Balance.check() runs once per account when the batch is written.
        self.dirty_accounts.add(debit.id)
        self.dirty_accounts.add(credit.id)

    def _record(self, row: dict[str, Any], kind: str) -> None:
        self.transfers[row["id"]] = row
        self.new_transfers.append(row)
        self.audit_events.append((kind, f"transfer:{row['id']}", row))


def _row(
    event: NewTransfer, timestamp_ns: int, *, amount: int, expires_at_ns: int | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": event.id,
        "debit_account_id": event.debit_account_id,
        "credit_account_id": event.credit_account_id,
        "amount": amount,
        "pending_id": event.pending_id or None,
        "timeout_s": event.timeout_s,
        "expires_at_ns": expires_at_ns,
        "ledger": event.ledger,
        "code": event.code,
        "flags": int(event.flags),
        "timestamp_ns": timestamp_ns,
        "user_data_128": event.user_data_128,
        "user_data_64": event.user_data_64,
        "user_data_32": event.user_data_32,
    }
    row.update(event.payment.as_columns())
    return row
