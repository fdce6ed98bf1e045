"""Ledger writes and lookups: every function takes ``(*, session, ...)``.

The caller owns the database transaction: nothing here commits or rolls
back, so both legs of a transfer, its budget usage and its audit entry are
committed by the caller together, or not at all.

Each write function follows the same steps, which is what makes concurrent
writers safe on both backends:

1. take the write lock (``audit.lock_head``: a row lock on PostgreSQL, the
   database write lock on SQLite);
2. load, with ``FOR UPDATE`` on PostgreSQL, exactly the accounts, transfers,
   budgets and usage buckets the batch touches;
3. apply the batch in memory (``books.Books``), one result per event;
4. write what changed with a few multi-row statements and append the audit
   entries.

The hot path uses SQLAlchemy Core on the SQLModel tables: a batch of N
payments costs a fixed number of statements, not N round trips of ORM units
of work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from farthing.invariant import invariant
from farthing.ledger import audit
from farthing.ledger.books import Balance, Books
from farthing.ledger.budget import WINDOW_HOURS, BudgetPolicy, hour_of, validate_limits
from farthing.ledger.bulk import insert_rows, select_rows
from farthing.ledger.columns import AMOUNT_MAX, HexUInt
from farthing.ledger.flags import AccountFlags, TransferFlags
from farthing.ledger.inputs import NewAccount, NewTransfer, new_id
from farthing.ledger.results import (
    CreateAccountResult,
    CreateTransferResult,
    RegisterAssetResult,
    SetBudgetResult,
)
from farthing.ledger.tables import (
    Account,
    Asset,
    Budget,
    BudgetUsage,
    PendingTransfer,
    Transfer,
    table_of,
)

__all__ = [
    "create_accounts",
    "create_transfers",
    "expire_pending",
    "get_budget",
    "lookup_accounts",
    "lookup_transfers",
    "register_asset",
    "set_budget",
]

_accounts = table_of(Account)
_transfers = table_of(Transfer)
_pending = table_of(PendingTransfer)
_budgets = table_of(Budget)
_usage = table_of(BudgetUsage)
_assets = table_of(Asset)
_TRANSFER_COLUMNS = frozenset(column.name for column in _transfers.columns)
_CHUNK = 500  # ids per IN (...): far below SQLite's and PostgreSQL's parameter limits
_EXPIRE_BATCH_MAX = 10_000
_ID = HexUInt(128)


def _now(now_ns: int | None) -> int:
    if now_ns is None:
        return time.time_ns()
    invariant(type(now_ns) is int and now_ns > 0, "now_ns must be a positive int")
    return now_ns


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


def _locking(session: Session) -> bool:
    return session.get_bind().dialect.name != "sqlite"


# Accounts ----------------------------------------------------------------


def create_accounts(
    *, session: Session, accounts: Sequence[NewAccount], now_ns: int | None = None
) -> list[CreateAccountResult]:
    """Create accounts; one result per event, ``exists`` for a faithful retry."""
    if not accounts:
        return []
    timestamp = _now(now_ns)
    head = audit.lock_head(session)
    books = Books()
    for chunk in _chunks(event.id for event in accounts if event.id):
        for row in session.execute(select(_accounts).where(_accounts.c.id.in_(chunk))):
            books.account_rows[row.id] = dict(row._mapping)
    results = [books.create_account(event, timestamp + i) for i, event in enumerate(accounts)]
    if books.new_accounts:
        session.execute(insert(_accounts), books.new_accounts)
    audit.append(session, head, books.audit_events, timestamp_ns=timestamp)
    return results


def lookup_accounts(*, session: Session, ids: Sequence[int]) -> list[Account]:
    """The accounts that exist among ``ids``, in the order asked for."""
    found: dict[int, Account] = {}
    for chunk in _chunks(ids):
        for account in session.scalars(select(Account).where(_accounts.c.id.in_(chunk))):
            found[account.id] = account
    return [found[i] for i in ids if i in found]


# Transfers ---------------------------------------------------------------


def create_transfers(
    *, session: Session, transfers: Sequence[NewTransfer], now_ns: int | None = None
) -> list[CreateTransferResult]:
    """Apply a batch of transfers in order; one result per event.

    Events see the effects of earlier events in the same batch, so a batch
    may reserve and post the same payment. A refused event changes nothing;
    the others still apply (there is no ``linked`` flag yet).
    """
    if not transfers:
        return []
    timestamp = _now(now_ns)
    head = audit.lock_head(session)
    books = Books()
    wanted = {e.id for e in transfers if e.id} | {e.pending_id for e in transfers if e.pending_id}
    _load_transfers(session, books, wanted)
    account_ids = {e.debit_account_id for e in transfers} | {e.credit_account_id for e in transfers}
    pending_ids = {
        pid
        for pid in (e.pending_id for e in transfers)
        if pid in books.transfers and books.transfers[pid]["flags"] & TransferFlags.PENDING
    }
    for pid in pending_ids:
        account_ids.add(books.transfers[pid]["debit_account_id"])
        account_ids.add(books.transfers[pid]["credit_account_id"])
    account_ids.discard(0)
    _load_balances(session, books, account_ids)
    _load_pending_status(session, books, pending_ids)
    _load_budgets(session, books, timestamp)
    asset_ids = {a for a in (e.payment.asset_id for e in transfers) if a is not None}
    _load_assets(session, books, asset_ids)

    results = [books.create_transfer(event, timestamp + i) for i, event in enumerate(transfers)]
    _write(session, books)
    audit.append(session, head, books.audit_events, timestamp_ns=timestamp)
    return results


def expire_pending(*, session: Session, now_ns: int | None = None, limit: int = 1_000) -> list[int]:
    """Expire pending transfers whose timeout has passed; return their ids.

    Each expiry is written as an immutable transfer flagged
    ``EXPIRE_PENDING_TRANSFER`` that releases the reservation. Call it on a
    schedule (it is cheap when nothing is due); ``limit`` bounds one call.
    """
    invariant(0 < limit <= _EXPIRE_BATCH_MAX, f"limit must be 1..{_EXPIRE_BATCH_MAX}")
    timestamp = _now(now_ns)
    head = audit.lock_head(session)
    due = session.execute(
        select(_pending.c.transfer_id, _pending.c.expires_at_ns)
        .where(_pending.c.expires_at_ns <= timestamp)
        .order_by(_pending.c.expires_at_ns)
        .limit(limit)
    ).all()
    if not due:
        return []
    books = Books()
    _load_transfers(session, books, {row.transfer_id for row in due})
    account_ids: set[int] = set()
    for row in due:
        pending = books.transfers[row.transfer_id]
        account_ids.update((pending["debit_account_id"], pending["credit_account_id"]))
        books.open_pending[row.transfer_id] = row.expires_at_ns
    _load_balances(session, books, account_ids)
    _load_budgets(session, books, timestamp)
    expired: list[int] = []
    for i, row in enumerate(due):
        result = books.expire(id=new_id(), pending_id=row.transfer_id, timestamp_ns=timestamp + i)
        invariant(
            result is CreateTransferResult.OK, f"expiry of {row.transfer_id} failed: {result}"
        )
        expired.append(row.transfer_id)
    _write(session, books)
    audit.append(session, head, books.audit_events, timestamp_ns=timestamp)
    return expired


def lookup_transfers(*, session: Session, ids: Sequence[int]) -> list[Transfer]:
    """The transfers that exist among ``ids``, in the order asked for."""
    found: dict[int, Transfer] = {}
    for chunk in _chunks(ids):
        for transfer in session.scalars(select(Transfer).where(_transfers.c.id.in_(chunk))):
            found[transfer.id] = transfer
    return [found[i] for i in ids if i in found]


# Budgets and assets ------------------------------------------------------


def set_budget(
    *, session: Session, policy: BudgetPolicy, now_ns: int | None = None
) -> SetBudgetResult:
    """Attach or replace the spend policy of a budget account.

    The account must limit its debits to its credits: that flag is what makes
    the total budget impossible to overspend. Fund the budget with transfers.
    """
    if not policy.agent_id.strip():
        return SetBudgetResult.AGENT_ID_MUST_NOT_BE_EMPTY
    reason = validate_limits(
        (policy.payment_cap, policy.daily_limit, policy.payee_daily_cap), AMOUNT_MAX
    )
    if reason is not None:
        return SetBudgetResult(reason)
    timestamp = _now(now_ns)
    head = audit.lock_head(session)
    account = session.execute(
        select(_accounts.c.flags).where(_accounts.c.id == policy.account_id)
    ).one_or_none()
    if account is None:
        return SetBudgetResult.ACCOUNT_NOT_FOUND
    if not account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS:
        return SetBudgetResult.ACCOUNT_MUST_LIMIT_DEBITS
    row = {
        "account_id": policy.account_id,
        "agent_id": policy.agent_id,
        "payment_cap": policy.payment_cap,
        "daily_limit": policy.daily_limit,
        "payee_daily_cap": policy.payee_daily_cap,
        "asset_allowlist": policy.allowlist_json(),
        "timestamp_ns": timestamp,
    }
    exists = session.execute(
        select(_budgets.c.account_id).where(_budgets.c.account_id == policy.account_id)
    ).first()
    if exists is None:
        session.execute(insert(_budgets), [row])
    else:
        session.execute(
            update(_budgets).where(_budgets.c.account_id == policy.account_id).values(row)
        )
    audit.append(
        session,
        head,
        [("budget_changed", f"account:{policy.account_id}", row)],
        timestamp_ns=timestamp,
    )
    return SetBudgetResult.OK


def get_budget(*, session: Session, account_id: int) -> BudgetPolicy | None:
    row = session.execute(select(_budgets).where(_budgets.c.account_id == account_id)).first()
    return None if row is None else _policy(row)


def register_asset(
    *,
    session: Session,
    asset_id: str,
    ledger: int,
    decimals: int,
    symbol: str,
    now_ns: int | None = None,
) -> RegisterAssetResult:
    """Declare that the token ``asset_id`` (CAIP-19) settles on ``ledger``."""
    A = RegisterAssetResult
    if type(ledger) is not int or type(decimals) is not int:
        raise TypeError("ledger and decimals must be ints")
    if not isinstance(asset_id, str) or "/" not in asset_id or len(asset_id) > 200:
        raise ValueError(f"asset_id must be a CAIP-19 id: {asset_id!r}")
    asset_id = asset_id.lower() if "/erc20:" in asset_id else asset_id
    if ledger == 0:
        return A.LEDGER_MUST_NOT_BE_ZERO
    if not 0 <= decimals <= 36:
        return A.DECIMALS_OUT_OF_RANGE
    timestamp = _now(now_ns)
    head = audit.lock_head(session)
    existing = session.execute(select(_assets).where(_assets.c.id == asset_id)).first()
    if existing is not None:
        if existing.ledger != ledger:
            return A.EXISTS_WITH_DIFFERENT_LEDGER
        if existing.decimals != decimals:
            return A.EXISTS_WITH_DIFFERENT_DECIMALS
        if existing.symbol != symbol:
            return A.EXISTS_WITH_DIFFERENT_SYMBOL
        return A.EXISTS
    row = {
        "id": asset_id,
        "ledger": ledger,
        "decimals": decimals,
        "symbol": symbol,
        "timestamp_ns": timestamp,
    }
    session.execute(insert(_assets), [row])
    audit.append(
        session, head, [("asset_registered", f"asset:{asset_id}", row)], timestamp_ns=timestamp
    )
    return A.OK


# Loading and writing ------------------------------------------------------


def _policy(row: Any) -> BudgetPolicy:
    return BudgetPolicy(
        account_id=row.account_id,
        agent_id=row.agent_id,
        payment_cap=row.payment_cap,
        daily_limit=row.daily_limit,
        payee_daily_cap=row.payee_daily_cap,
        asset_allowlist=BudgetPolicy.parse_allowlist(row.asset_allowlist),
    )


def _load_transfers(session: Session, books: Books, ids: Iterable[int]) -> None:
    for chunk in _chunks(ids):
        for row in select_rows(session, _transfers, "id", chunk):
            books.transfers[row["id"]] = row


def _load_balances(session: Session, books: Books, ids: Iterable[int]) -> None:
    columns = (
        _accounts.c.id,
        _accounts.c.ledger,
        _accounts.c.flags,
        _accounts.c.debits_pending,
        _accounts.c.debits_posted,
        _accounts.c.credits_pending,
        _accounts.c.credits_posted,
    )
    for chunk in _chunks(ids):
        query = select(*columns).where(_accounts.c.id.in_(chunk)).order_by(_accounts.c.id)
        if _locking(session):
            # Sorted, so two writers always lock in the same order.
            query = query.with_for_update()
        for row in session.execute(query):
            books.accounts[row.id] = Balance(*row)


def _load_pending_status(session: Session, books: Books, pending_ids: set[int]) -> None:
    for chunk in _chunks(pending_ids):
        query = select(_pending.c.transfer_id, _pending.c.expires_at_ns).where(
            _pending.c.transfer_id.in_(chunk)
        )
        for row in session.execute(query):
            books.open_pending[row.transfer_id] = row.expires_at_ns
    closed = pending_ids - books.open_pending.keys()
    for chunk in _chunks(closed):
        query = select(_transfers.c.pending_id, _transfers.c.flags).where(
            _transfers.c.pending_id.in_(chunk)
        )
        for row in session.execute(query):
            books.resolutions[row.pending_id] = row.flags


def _load_budgets(session: Session, books: Books, timestamp_ns: int) -> None:
    ids = list(books.accounts)
    for chunk in _chunks(ids):
        for row in session.execute(select(_budgets).where(_budgets.c.account_id.in_(chunk))):
            books.budgets[row.account_id] = _policy(row)
    # Wide enough for every event in the batch, whose timestamps run on from here.
    books.usage_floor_hour = hour_of(timestamp_ns) - WINDOW_HOURS
    for chunk in _chunks(books.budgets):
        query = select(_usage).where(
            _usage.c.account_id.in_(chunk), _usage.c.hour >= books.usage_floor_hour
        )
        for row in session.execute(query):
            books.usage.setdefault(row.account_id, {})[(row.payee_account_id, row.hour)] = (
                row.amount
            )
    books.usage_loaded = {
        (account_id, payee, hour)
        for account_id, buckets in books.usage.items()
        for (payee, hour) in buckets
    }


def _load_assets(session: Session, books: Books, asset_ids: set[str]) -> None:
    if asset_ids:
        query = select(_assets.c.id, _assets.c.ledger).where(_assets.c.id.in_(sorted(asset_ids)))
        books.assets.update({row.id: row.ledger for row in session.execute(query)})


def _write(session: Session, books: Books) -> None:
    if books.new_transfers:
        invariant(
            all(row.keys() == _TRANSFER_COLUMNS for row in books.new_transfers),
            "transfer rows carry exactly the table's columns",
        )
        insert_rows(session, _transfers, books.new_transfers)
    if books.pending_removed:
        for chunk in _chunks(books.pending_removed):
            session.execute(delete(_pending).where(_pending.c.transfer_id.in_(chunk)))
    if books.pending_added:
        rows = [{"transfer_id": k, "expires_at_ns": v} for k, v in books.pending_added.items()]
        insert_rows(session, _pending, rows)
    if books.dirty_accounts:
        rows = []
        for account_id in sorted(books.dirty_accounts):
            balance = books.accounts[account_id]
            balance.check()
            rows.append(
                {
                    "b_id": account_id,
                    "b_dpend": balance.debits_pending,
                    "b_dpost": balance.debits_posted,
                    "b_cpend": balance.credits_pending,
                    "b_cpost": balance.credits_posted,
                }
            )
        session.connection().execute(_UPDATE_BALANCES, rows)
    if books.usage_dirty:
        inserts, updates = [], []
        for account_id, payee, hour in sorted(books.usage_dirty):
            amount = books.usage[account_id][(payee, hour)]
            if (account_id, payee, hour) in books.usage_loaded:
                updates.append(
                    {"b_id": account_id, "b_payee": payee, "b_hour": hour, "b_amount": amount}
                )
            else:
                inserts.append(
                    {
                        "account_id": account_id,
                        "payee_account_id": payee,
                        "hour": hour,
                        "amount": amount,
                    }
                )
        if inserts:
            session.execute(insert(_usage), inserts)
        if updates:
            session.connection().execute(_UPDATE_USAGE, updates)


_UPDATE_BALANCES = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("b_id", type_=_ID))
    .values(
        debits_pending=bindparam("b_dpend"),
        debits_posted=bindparam("b_dpost"),
        credits_pending=bindparam("b_cpend"),
        credits_posted=bindparam("b_cpost"),
    )
)
_UPDATE_USAGE = (
    update(_usage)
    .where(
        _usage.c.account_id == bindparam("b_id", type_=_ID),
        _usage.c.payee_account_id == bindparam("b_payee", type_=_ID),
        _usage.c.hour == bindparam("b_hour"),
    )
    .values(amount=bindparam("b_amount"))
)
