"""The payment database's tables and the values read from and written to them.

``paywall_payment`` holds one row per authorization (its states are drawn in
:mod:`farthing.paywall.records.store`, which claims and moves them);
``paywall_relayer_nonce`` holds each relayer key's next account nonce
(:mod:`farthing.paywall.records.nonces`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import BigInteger, Boolean, Column, MetaData, String, Table

__all__ = [
    "ADDED_COLUMNS",
    "KEY_COLUMNS",
    "METADATA",
    "PAYMENTS",
    "RELAYER_NONCES",
    "ClaimOutcome",
    "NonceTicket",
    "PaymentKey",
    "PaymentRecord",
    "PaymentState",
    "payment_record",
    "payment_row",
]

METADATA: Final = MetaData()

PAYMENTS: Final = Table(
    "paywall_payment",
    METADATA,
    Column("network", String(32), primary_key=True),
    Column("token", String(42), primary_key=True),
    Column("payer", String(42), primary_key=True),
    Column("nonce", String(66), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("owner", String(32), nullable=False),
    Column("pay_to", String(42), nullable=False),
    Column("amount", String(78), nullable=False),  # uint256 as decimal text
    Column("route", String(512), nullable=False),
    Column("resource", String(2048), nullable=False),
    Column("fiat_currency", String(16)),
    Column("fiat_rate", String(64)),  # Decimal as text: never a float
    Column("valid_after", BigInteger, nullable=False),
    Column("valid_before", BigInteger, nullable=False),
    Column("tx_hash", String(66)),
    Column("block_number", BigInteger),
    Column("reason", String(128)),
    Column("booked", Boolean, nullable=False, default=False),
    Column("claimed_at_ns", BigInteger, nullable=False),
    Column("updated_at_ns", BigInteger, nullable=False),
    # Added after the first release: nullable, so old databases can gain them.
    Column("lease_until_ns", BigInteger),  # NULL: no live owner
    Column("delivered_at_ns", BigInteger),  # NULL: the paid content was not sent yet
    Column("scheme", String(32)),  # NULL: exact (rows from before upto existed)
    # What the settlement moved, uint256 as decimal text; NULL: ``amount`` (exact's price).
    # An upto row's ``amount`` is the signed ceiling, and the charge settled may be less.
    Column("settled_amount", String(78)),
)

# The next account nonce of each relayer key, shared by every process that
# settles with it (see :func:`~farthing.paywall.records.nonces.hold_relayer_nonce`).
RELAYER_NONCES: Final = Table(
    "paywall_relayer_nonce",
    METADATA,
    Column("network", String(32), primary_key=True),
    Column("address", String(42), primary_key=True),
    Column("next_nonce", BigInteger, nullable=False),
    Column("updated_at_ns", BigInteger, nullable=False),
)

# Columns added since the first release, with the SQL type to add them as.
ADDED_COLUMNS: Final = (
    ("lease_until_ns", "BIGINT"),
    ("delivered_at_ns", "BIGINT"),
    ("scheme", "VARCHAR(32)"),
    ("settled_amount", "VARCHAR(78)"),
)


class PaymentState(StrEnum):
    CLAIMED = "claimed"
    SETTLED = "settled"
    RELEASED = "released"
    FAILED = "failed"
    PENDING = "pending"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PaymentKey:
    """What makes a payment unique: EIP-3009 nonces are per (token, payer)."""

    network: str
    token: str
    payer: str
    nonce: str  # 0x + 64 hex digits

    def __post_init__(self) -> None:
        for name in ("network", "token", "payer", "nonce"):
            object.__setattr__(self, name, getattr(self, name).lower())

    def where(self) -> Any:
        c = PAYMENTS.c
        return (
            (c.network == self.network)
            & (c.token == self.token)
            & (c.payer == self.payer)
            & (c.nonce == self.nonce)
        )


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One row of ``paywall_payment``.

    ``amount`` is what the payer authorized (exact's price, upto's ceiling);
    :attr:`charge` is what a settled row moved, the figure to book.
    """

    key: PaymentKey
    state: PaymentState
    owner: str
    pay_to: str
    amount: int
    route: str
    resource: str
    valid_after: int
    valid_before: int
    fiat_currency: str | None = None
    fiat_rate: Decimal | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    reason: str | None = None
    booked: bool = False
    lease_until_ns: int | None = None
    delivered: bool = False
    scheme: str = "exact"
    settled_amount: int | None = None

    @property
    def charge(self) -> int:
        """What the settlement moved: the settled amount when recorded, else ``amount``.

        An upto row settles less than its ceiling; only a settled upto row
        with its settled amount recorded has a charge (see :meth:`bookable`).
        """
        return self.amount if self.settled_amount is None else self.settled_amount

    @property
    def bookable(self) -> bool:
        """A settled row whose charge is known: never an upto row's bare ceiling."""
        return self.scheme != "upto" or self.settled_amount is not None


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """``won`` with the owner token to pass to later moves, or the row that was there."""

    won: bool
    owner: str = ""
    existing: PaymentRecord | None = None


@dataclass(slots=True)
class NonceTicket:
    """The relayer nonce to sign with; call :meth:`sent` once the node has the transaction."""

    nonce: int
    was_sent: bool = False

    def sent(self) -> None:
        self.was_sent = True


KEY_COLUMNS: Final = frozenset({"network", "token", "payer", "nonce"})


def payment_row(
    record: PaymentRecord, *, owner: str, state: PaymentState, now: int
) -> dict[str, Any]:
    return {
        "network": record.key.network,
        "token": record.key.token,
        "payer": record.key.payer,
        "nonce": record.key.nonce,
        "state": state,
        "owner": owner,
        "pay_to": record.pay_to.lower(),
        "amount": str(record.amount),
        "route": record.route[:512],
        "resource": record.resource[:2048],
        "fiat_currency": record.fiat_currency,
        "fiat_rate": None if record.fiat_rate is None else str(record.fiat_rate),
        "valid_after": record.valid_after,
        "valid_before": record.valid_before,
        "tx_hash": None,
        "block_number": None,
        "reason": None,
        "booked": False,
        "claimed_at_ns": now,
        "updated_at_ns": now,
        "lease_until_ns": None,
        "delivered_at_ns": None,
        "scheme": record.scheme,
        "settled_amount": None,
    }


def payment_record(row: Any) -> PaymentRecord:
    return PaymentRecord(
        key=PaymentKey(row.network, row.token, row.payer, row.nonce),
        state=PaymentState(row.state),
        owner=row.owner,
        pay_to=row.pay_to,
        amount=int(row.amount),
        route=row.route,
        resource=row.resource,
        valid_after=int(row.valid_after),
        valid_before=int(row.valid_before),
        fiat_currency=row.fiat_currency,
        fiat_rate=None if row.fiat_rate is None else Decimal(row.fiat_rate),
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        reason=row.reason,
        booked=bool(row.booked),
        lease_until_ns=row.lease_until_ns,
        delivered=row.delivered_at_ns is not None,
        scheme=row.scheme or "exact",
        settled_amount=None if row.settled_amount is None else int(row.settled_amount),
    )
