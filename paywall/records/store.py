"""The paywall's payment records: one row per authorization, claimed atomically.

Every paid request claims its authorization's key ``(network, token, payer,
nonce)`` here *before* the handler runs and before anything is settled. The
claim is a single ``INSERT`` against the primary key, so of any number of
requests carrying the same payment, in one process or many sharing the
database (a SQLite file, or PostgreSQL), exactly one wins; every other one is
told ``nonce_already_used``.

A row moves through these states (the owner token of the winning request
guards every move, so a late request can never release someone else's claim)::

    claimed ──► settled            the transfer is on-chain (then delivered)
       │  ├───► released           the handler failed; the payer may try again
       │  ├───► failed             settlement was refused (reason recorded)
       │  └───► pending            the outcome is unknown (a timeout): resolved
       │                           from the chain later, never guessed
    pending ──► settled | failed | expired   (``farthing.paywall.facilitator.resolve``)

**A claim is a lease.** The owner holds the row until ``lease_until_ns`` and
renews it before each long step (the settlement). A process that dies (kill
-9, power loss) stops renewing; once the lease has run out, the payer's retry
or the sweep takes the row over with one compare-and-swap
(:meth:`PaymentStore.take_over`): it gets a new owner token, so nothing the
dead (or merely late) owner does afterwards can land. The new owner resolves
the payment from the chain. A ``settled`` row whose content was never
delivered (``delivered_at_ns`` unset: the process died between settling and
answering) can likewise be taken over once its lease ends, to deliver it.

Databases created before leases existed get the two columns added on open
(SQLite and PostgreSQL); their stuck claims count as expired, and their
settled rows as delivered. Likewise ``scheme`` (NULL reads as ``exact``) and
``settled_amount``: what a settlement moved, which for ``upto`` is the
charge, at most the ``amount`` (the ceiling) the row was claimed for; a
settled row is booked and reported at :attr:`PaymentRecord.charge`.

The caller never holds a database transaction open across network calls:
each method here is one short statement. Methods are synchronous; the
middleware runs them in a worker thread.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Update, bindparam, inspect, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, ProgrammingError

from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.records.database import create_tables, database_errors, open_paywall_database
from farthing.paywall.records.nonces import hold_relayer_nonce
from farthing.paywall.records.payments import (
    ADDED_COLUMNS,
    KEY_COLUMNS,
    METADATA,
    PAYMENTS,
    ClaimOutcome,
    NonceTicket,
    PaymentKey,
    PaymentRecord,
    PaymentState,
    payment_record,
    payment_row,
)

__all__ = ["CLAIM_LEASE_S_DEFAULT", "PaymentStore"]

# How long a claim stays its owner's without a renewal: it must cover running
# the handler, and (renewed before settling) the settlement's receipt wait.
CLAIM_LEASE_S_DEFAULT: Final = 180.0
_LEASE_S_MAX: Final = 24 * 3600.0


@functools.cache
def _claim_insert(sqlite: bool, fields: tuple[str, ...]) -> Any:
    """The claim's INSERT of a new row with ``fields`` (bound as ``row_*``): built once per shape.

    RETURNING tells a fresh row from a conflict on both backends (the
    driver's rowcount is not reliable for an INSERT on PostgreSQL).
    """
    insert = sqlite_insert if sqlite else pg_insert
    values: dict[str, Any] = {name: bindparam(f"row_{name}") for name in fields}
    return insert(PAYMENTS).values(values).on_conflict_do_nothing().returning(PAYMENTS.c.owner)


@functools.cache
def _held_update(fields: tuple[str, ...], in_state: bool) -> Update:
    """The UPDATE of a row its owner holds, writing ``fields``: built once per shape.

    The key, the owner, the state and the new values are bound parameters
    (``held_*``, ``new_*``), so a move costs one execution, not a statement
    built and coerced each time.
    """
    c = PAYMENTS.c
    held = (
        (c.network == bindparam("held_network"))
        & (c.token == bindparam("held_token"))
        & (c.payer == bindparam("held_payer"))
        & (c.nonce == bindparam("held_nonce"))
        & (c.owner == bindparam("held_owner"))
    )
    if in_state:
        held = held & (c.state == bindparam("held_state", type_=c.state.type))
    return update(PAYMENTS).where(held).values({name: bindparam(f"new_{name}") for name in fields})


def _now_ns() -> int:
    return time.time_ns()


def _lease_ns(lease_s: float) -> int:
    if not 0 < lease_s <= _LEASE_S_MAX:
        raise PaywallConfigError(f"a claim lease must be between 0 and {_LEASE_S_MAX:.0f} s")
    return int(lease_s * 1_000_000_000)


def _lease_over(now: int) -> Any:
    """The row has no live owner: no lease, or one that has run out."""
    c = PAYMENTS.c
    return or_(c.lease_until_ns.is_(None), c.lease_until_ns < now)


class PaymentStore:
    """Payment records in SQLite (a file shared by processes) or PostgreSQL."""

    def __init__(self, url: str, *, busy_timeout_s: float = 10.0) -> None:
        database = open_paywall_database(url, busy_timeout_s=busy_timeout_s)
        self.engine = database.engine
        self.display_url = database.display_url
        self.dialect = database.dialect
        with self._errors():
            create_tables(self.engine, METADATA)
            self._add_missing_columns()
            # Sign-in and receipts ask "what did this payer buy?": without this
            # index that is a scan of every payment (payer is not the key's first column).
            with self.engine.begin() as connection:
                connection.exec_driver_sql(
                    f"CREATE INDEX IF NOT EXISTS ix_{PAYMENTS.name}_payer_state"
                    f" ON {PAYMENTS.name} (payer, state)"
                )

    @classmethod
    def sqlite(cls, path: Path | str) -> PaymentStore:
        return cls(f"sqlite:///{Path(path).expanduser()}")

    def __repr__(self) -> str:
        return f"PaymentStore({self.display_url!r})"

    def _add_missing_columns(self) -> None:
        """Bring a table made by older code up to date (idempotent, safe to race)."""
        present = {c["name"] for c in inspect(self.engine).get_columns(PAYMENTS.name)}
        for name, sql_type in ADDED_COLUMNS:
            if name in present:
                continue
            try:
                with self.engine.begin() as connection:
                    connection.exec_driver_sql(
                        f"ALTER TABLE {PAYMENTS.name} ADD COLUMN {name} {sql_type}"
                    )
                    if name == "delivered_at_ns":
                        # Old code answered right after settling: count those as delivered,
                        # so an old payment header cannot fetch the content again.
                        connection.execute(
                            update(PAYMENTS)
                            .where(PAYMENTS.c.state == PaymentState.SETTLED)
                            .values(delivered_at_ns=PAYMENTS.c.updated_at_ns)
                        )
            except (ProgrammingError, DBAPIError):
                # Another process added it first; anything else shows up below.
                again = {c["name"] for c in inspect(self.engine).get_columns(PAYMENTS.name)}
                if name not in again:
                    raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        with database_errors("paywall database", self.display_url):
            yield

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._errors(), self.engine.begin() as connection:
            yield connection

    # ------------------------------------------------------------ claims

    def claim(
        self, record: PaymentRecord, *, lease_s: float = CLAIM_LEASE_S_DEFAULT
    ) -> ClaimOutcome:
        """Claim ``record.key`` for one request; a released claim may be claimed again."""
        owner = secrets.token_hex(16)
        now = _now_ns()
        row = payment_row(record, owner=owner, state=PaymentState.CLAIMED, now=now)
        row["lease_until_ns"] = now + _lease_ns(lease_s)
        statement = _claim_insert(self.dialect == "sqlite", tuple(sorted(row)))
        with self._begin() as connection:
            bound = {f"row_{k}": v for k, v in row.items()}
            if connection.execute(statement, bound).first() is not None:
                return ClaimOutcome(True, owner)
            # Only a claim the handler gave back may be taken again; the
            # state test in the WHERE makes this a compare-and-swap.
            retaken = connection.execute(
                update(PAYMENTS)
                .where(record.key.where() & (PAYMENTS.c.state == PaymentState.RELEASED))
                .values(**{k: v for k, v in row.items() if k not in KEY_COLUMNS})
            )
            if retaken.rowcount == 1:
                return ClaimOutcome(True, owner)
            existing = self._get(connection, record.key)
        return ClaimOutcome(False, existing=existing)

    def reclaim_pending(
        self, key: PaymentKey, *, lease_s: float = CLAIM_LEASE_S_DEFAULT
    ) -> ClaimOutcome:
        """Take over a ``pending`` row to resolve it (one request at a time)."""
        return self._take(key, PAYMENTS.c.state == PaymentState.PENDING, lease_s)

    def take_over(self, key: PaymentKey, *, lease_s: float = CLAIM_LEASE_S_DEFAULT) -> ClaimOutcome:
        """Take a row nobody is working on, to resolve or deliver it; one taker wins.

        Takeable: a ``pending`` row; a ``claimed`` row whose lease has run out
        (its owner died or stalled); a ``settled`` row never delivered whose
        lease has run out. A pending row becomes ``claimed``; a settled one
        stays settled. ``existing`` is the row as it was before the takeover.
        """
        c = PAYMENTS.c
        now = _now_ns()
        takeable = (c.state == PaymentState.PENDING) | (
            _lease_over(now)
            & (
                (c.state == PaymentState.CLAIMED)
                | ((c.state == PaymentState.SETTLED) & c.delivered_at_ns.is_(None))
            )
        )
        return self._take(key, takeable, lease_s)

    def _take(self, key: PaymentKey, condition: Any, lease_s: float) -> ClaimOutcome:
        c = PAYMENTS.c
        owner = secrets.token_hex(16)
        before = self.get(key)
        if before is None:
            return ClaimOutcome(False)
        now = _now_ns()
        # Every claim, takeover and move changes the owner token or the state,
        # so matching both makes this a compare-and-swap on the row read above
        # (a single write statement: no read-then-upgrade lock on SQLite).
        with self._begin() as connection:
            moved = connection.execute(
                update(PAYMENTS)
                .where(
                    key.where() & condition & (c.owner == before.owner) & (c.state == before.state)
                )
                .values(
                    state=PaymentState.CLAIMED
                    if before.state == PaymentState.PENDING
                    else before.state,
                    owner=owner,
                    lease_until_ns=now + _lease_ns(lease_s),
                    updated_at_ns=now,
                )
            )
            if moved.rowcount == 1:
                return ClaimOutcome(True, owner, existing=before)
        return ClaimOutcome(False, existing=self.get(key))

    def renew(self, key: PaymentKey, owner: str, *, lease_s: float) -> bool:
        """Extend the owner's lease from now; ``False`` means it was taken over."""
        return self._update_held(key, owner, None, lease_until_ns=_now_ns() + _lease_ns(lease_s))

    def _update_held(
        self, key: PaymentKey, owner: str, in_state: PaymentState | None, /, **values: Any
    ) -> bool:
        """Write ``values`` to the row ``owner`` holds (in ``in_state``, when one is named).

        ``False`` when no such row is there: another owner took it over, or it moved on.
        """
        statement = _held_update(tuple(sorted(values)), in_state is not None)
        bound = {
            "held_network": key.network,
            "held_token": key.token,
            "held_payer": key.payer,
            "held_nonce": key.nonce,
            "held_owner": owner,
            "held_state": in_state,
            **{f"new_{name}": value for name, value in values.items()},
        }
        with self._begin() as connection:
            moved = connection.execute(statement, bound)
        return moved.rowcount == 1

    def _move(self, key: PaymentKey, owner: str, **values: Any) -> bool:
        """Move a ``claimed`` row held by ``owner``; settled and final rows never move back."""
        return self._update_held(
            key, owner, PaymentState.CLAIMED, updated_at_ns=_now_ns(), **values
        )

    def release(self, key: PaymentKey, owner: str) -> bool:
        return self._move(
            key, owner, state=PaymentState.RELEASED, reason="handler_failed", lease_until_ns=None
        )

    def mark_settled(
        self,
        key: PaymentKey,
        owner: str,
        *,
        tx_hash: str,
        block_number: int | None,
        amount: int | None = None,
        keep_lease: bool = True,
    ) -> bool:
        """Settled, having moved ``amount`` (``None``: the row's own, exact's price).

        An upto settlement names its charge: the row's ``amount`` is the
        ceiling, and whatever books or reports the row uses the charge.
        ``keep_lease=False`` (the sweep) lets the payer's retry deliver at once.
        """
        values: dict[str, Any] = {
            "state": PaymentState.SETTLED,
            "tx_hash": tx_hash.lower(),
            "block_number": block_number,
            "reason": None,
        }
        if amount is not None:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise TypeError("a settled amount is a non-negative int of atomic units")
            values["settled_amount"] = str(amount)
        if not keep_lease:
            values["lease_until_ns"] = None
        return self._move(key, owner, **values)

    def mark_failed(self, key: PaymentKey, owner: str, *, reason: str) -> bool:
        return self._move(
            key, owner, state=PaymentState.FAILED, reason=reason[:128], lease_until_ns=None
        )

    def mark_pending(
        self,
        key: PaymentKey,
        owner: str,
        *,
        reason: str,
        tx_hash: str | None,
        delivered: bool = False,
    ) -> bool:
        """Pending; ``delivered`` when the content already went out (an upto stream settles
        after it): resolved from the chain all the same, but a retry never gets it again."""
        values: dict[str, Any] = {
            "state": PaymentState.PENDING,
            "reason": reason[:128],
            "lease_until_ns": None,
        }
        if tx_hash:
            values["tx_hash"] = tx_hash.lower()
        if delivered:
            values["delivered_at_ns"] = _now_ns()
        return self._move(key, owner, **values)

    def mark_expired(self, key: PaymentKey, owner: str) -> bool:
        return self._move(
            key,
            owner,
            state=PaymentState.EXPIRED,
            reason="authorization_expired",
            lease_until_ns=None,
        )

    def mark_delivered(self, key: PaymentKey, owner: str) -> bool:
        """The paid content went out: this payment header gets nothing more."""
        return self._update_held(
            key, owner, PaymentState.SETTLED, delivered_at_ns=_now_ns(), lease_until_ns=None
        )

    def give_back(self, key: PaymentKey, owner: str) -> bool:
        """End the owner's lease without moving the row: the next taker may have it at once."""
        return self._update_held(key, owner, None, lease_until_ns=None, updated_at_ns=_now_ns())

    def mark_booked(self, key: PaymentKey) -> None:
        with self._begin() as connection:
            connection.execute(update(PAYMENTS).where(key.where()).values(booked=True))

    # ------------------------------------------------------------ reads

    def get(self, key: PaymentKey) -> PaymentRecord | None:
        with self._begin() as connection:
            return self._get(connection, key)

    def _get(self, connection: Connection, key: PaymentKey) -> PaymentRecord | None:
        row = connection.execute(select(PAYMENTS).where(key.where())).first()
        return None if row is None else payment_record(row)

    def records(self, *, state: PaymentState | None = None) -> list[PaymentRecord]:
        query = select(PAYMENTS).order_by(PAYMENTS.c.claimed_at_ns)
        if state is not None:
            query = query.where(PAYMENTS.c.state == state)
        with self._begin() as connection:
            return [payment_record(row) for row in connection.execute(query)]

    def settled_by(self, payer: str) -> list[PaymentRecord]:
        """The settled payments of one payer (indexed by payer and state)."""
        query = select(PAYMENTS).where(
            (PAYMENTS.c.payer == payer.lower()) & (PAYMENTS.c.state == PaymentState.SETTLED)
        )
        with self._begin() as connection:
            return [payment_record(row) for row in connection.execute(query)]

    def sweepable(self) -> list[PaymentRecord]:
        """Rows the sweep resolves: ``pending``, and ``claimed`` with no live owner."""
        c = PAYMENTS.c
        query = (
            select(PAYMENTS)
            .where(
                (c.state == PaymentState.PENDING)
                | ((c.state == PaymentState.CLAIMED) & _lease_over(_now_ns()))
            )
            .order_by(c.claimed_at_ns)
        )
        with self._begin() as connection:
            return [payment_record(row) for row in connection.execute(query)]

    def unbooked(self) -> list[PaymentRecord]:
        """Settled payments whose revenue is not in the books yet."""
        query = select(PAYMENTS).where(
            (PAYMENTS.c.state == PaymentState.SETTLED) & (PAYMENTS.c.booked.is_(False))
        )
        with self._begin() as connection:
            return [payment_record(row) for row in connection.execute(query)]

    # ------------------------------------------------------------ relayer nonces

    def relayer_nonce(
        self, network: str, address: str, chain_next: Callable[[], int]
    ) -> AbstractContextManager[NonceTicket]:
        """Hold the relayer's nonce row while one transaction is signed and sent.

        See :func:`~farthing.paywall.records.nonces.hold_relayer_nonce`: the
        nonce to use is the larger of the database's and ``chain_next()``, and
        only a ticket marked :meth:`NonceTicket.sent` advances it.
        """
        return hold_relayer_nonce(
            self.engine,
            dialect=self.dialect,
            display_url=self.display_url,
            network=network,
            address=address,
            chain_next=chain_next,
        )

    def dispose(self) -> None:
        self.engine.dispose()
