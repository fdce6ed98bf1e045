"""What a client submits: ``NewAccount``, ``NewTransfer`` and ``PaymentDetails``.

These are frozen dataclasses, built before anything is written and safe to
keep for a retry. Their constructors reject wrong *types* and malformed
*formats* by raising (a float amount or a 31-byte nonce is a bug in the
caller). Whether a well-formed event fits the books (a zero amount, an unknown
account, an exhausted budget) is decided by the ledger and returned as a
result value, because those are outcomes a caller must handle.

Ids are unsigned 128-bit ints chosen by the client, as in TigerBeetle:
``new_id()`` makes one whose high 48 bits are the time in milliseconds, so ids
made later sort later and index inserts stay at the right edge of the B-tree.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from farthing.ledger.columns import ID_MAX
from farthing.ledger.flags import AccountFlags, TransferFlags

__all__ = ["NewAccount", "NewTransfer", "PaymentDetails", "derived_id", "new_id"]

_HEX32 = re.compile(r"^0x[0-9a-f]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
# CAIP-2: namespace ":" reference.
_NETWORK = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}$")
_TEXT_LENGTH_MAX = 2048


def new_id() -> int:
    """A fresh 128-bit id: 48 bits of milliseconds, then 80 random bits."""
    return ((time.time_ns() // 1_000_000) << 80) | secrets.randbits(80) | 1


def derived_id(namespace: bytes, payload: bytes) -> int:
    """A valid id that is a pure function of ``payload`` within ``namespace``.

    Retries that derive the same id collide on it and get ``exists``, so an
    event can be written at most once without the caller storing a second id.
    """
    digest = hashlib.sha256(namespace + payload).digest()
    # 1 .. ID_MAX: TigerBeetle reserves 0 and 2**128 - 1.
    value: int = int.from_bytes(digest[:16], "big") % ID_MAX + 1
    return value


def _require_int(name: str, value: object) -> None:
    # A float is never money and a bool is not a number: both are caller bugs.
    # IntEnum codes are fine; __post_init__ stores them as plain ints.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


def _require_uint(name: str, value: int, bits: int) -> None:
    _require_int(name, value)
    if value < 0 or value.bit_length() > bits:
        raise ValueError(f"{name} must be an unsigned {bits}-bit int")


def _lower_hex(name: str, value: str | None, pattern: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str")
    lowered = value.lower()
    if not pattern.match(lowered):
        raise ValueError(f"{name} is malformed: {value!r}")
    return lowered


@dataclass(frozen=True, slots=True)
class PaymentDetails:
    """What the ledger records about the payment behind a transfer.

    A pending payment knows its payee, resource, task and ``valid_before``; a
    post adds the settlement: ``tx_hash``, ``block_number`` and the
    authorization actually used. Fields left ``None`` on a post or void are
    inherited from the pending transfer, so every row reads on its own.
    Addresses and hashes are stored in lowercase so matching is exact.
    """

    network: str | None = None  # CAIP-2, e.g. "eip155:8453"
    token_address: str | None = None
    authorization_nonce: str | None = None  # 0x + 32 bytes of hex
    tx_hash: str | None = None
    block_number: int | None = None
    payer_address: str | None = None
    payee_address: str | None = None
    resource: str | None = None
    task_id: str | None = None
    purpose: str | None = None
    fiat_rate: str | None = None  # a decimal string; never a float
    fiat_currency: str | None = None
    valid_after: int | None = None  # unix seconds, as signed in the authorization
    valid_before: int | None = None

    def __post_init__(self) -> None:
        if self.network is not None and not _NETWORK.match(self.network):
            raise ValueError(f"network must be a CAIP-2 id such as eip155:8453: {self.network!r}")
        for name in ("token_address", "payer_address", "payee_address"):
            object.__setattr__(self, name, _lower_hex(name, getattr(self, name), _ADDRESS))
        for name in ("authorization_nonce", "tx_hash"):
            object.__setattr__(self, name, _lower_hex(name, getattr(self, name), _HEX32))
        for name in ("block_number", "valid_after", "valid_before"):
            value = getattr(self, name)
            if value is not None:
                _require_uint(name, value, 63)
        for name in ("resource", "task_id", "purpose", "fiat_currency"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > _TEXT_LENGTH_MAX):
                raise ValueError(f"{name} must be a str of at most {_TEXT_LENGTH_MAX} characters")
        if self.fiat_rate is not None:
            try:
                rate = Decimal(self.fiat_rate)
            except (InvalidOperation, TypeError) as exc:
                raise ValueError(f"fiat_rate must be a decimal string: {self.fiat_rate!r}") from exc
            if not isinstance(self.fiat_rate, str) or not rate.is_finite() or rate <= 0:
                raise ValueError(f"fiat_rate must be a positive decimal string: {self.fiat_rate!r}")

    @property
    def asset_id(self) -> str | None:
        """The CAIP-19 id of the token, when both network and token are known."""
        if self.network is None or self.token_address is None:
            return None
        return f"{self.network}/erc20:{self.token_address}"

    def as_columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PAYMENT_COLUMNS}


_TRANSFER_UINTS = (
    ("id", 128),
    ("debit_account_id", 128),
    ("credit_account_id", 128),
    ("pending_id", 128),
    ("ledger", 32),
    ("code", 16),
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
)
PAYMENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(PaymentDetails))
# Frozen, so one shared "no payment facts" value serves every transfer without them.
NO_PAYMENT = PaymentDetails()


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to create: TigerBeetle's fields plus a human ``label``."""

    id: int
    ledger: int
    code: int
    flags: AccountFlags = AccountFlags.NONE
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    label: str | None = None

    def __post_init__(self) -> None:
        _require_uint("id", self.id, 128)
        _require_uint("ledger", self.ledger, 32)
        _require_uint("code", self.code, 16)
        _require_uint("user_data_128", self.user_data_128, 128)
        _require_uint("user_data_64", self.user_data_64, 64)
        _require_uint("user_data_32", self.user_data_32, 32)
        for name in ("id", "ledger", "code", "user_data_128", "user_data_64", "user_data_32"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "flags", AccountFlags(int(self.flags)))
        if self.label is not None and (not isinstance(self.label, str) or len(self.label) > 256):
            raise ValueError("label must be a str of at most 256 characters")


@dataclass(frozen=True, slots=True)
class NewTransfer:
    """A transfer to create, following TigerBeetle's ``Transfer``.

    For a post or void, zero account ids, ledger and code mean "the pending
    transfer's"; ``amount=None`` posts the whole pending amount. ``timeout_s``
    is TigerBeetle's ``timeout`` (seconds after the pending transfer is
    written; 0 never expires), with the unit in its name. ``amount`` is a
    signed int only so that a negative one can be refused as a value.
    """

    id: int
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount: int | None = None
    pending_id: int = 0
    timeout_s: int = 0
    ledger: int = 0
    code: int = 0
    flags: TransferFlags = TransferFlags.NONE
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    payment: PaymentDetails = NO_PAYMENT

    def __post_init__(self) -> None:
        for name, bits in _TRANSFER_UINTS:
            value = getattr(self, name)
            if type(value) is not int:  # an IntEnum, or a caller bug
                _require_uint(name, value, bits)
                object.__setattr__(self, name, int(value))
            elif value < 0 or value >> bits:
                raise ValueError(f"{name} must be an unsigned {bits}-bit int")
        for name in ("amount", "timeout_s"):
            value = getattr(self, name)
            if value is not None and type(value) is not int:
                _require_int(name, value)
                object.__setattr__(self, name, int(value))
        if type(self.flags) is not TransferFlags:
            object.__setattr__(self, "flags", TransferFlags(int(self.flags)))
        if not isinstance(self.payment, PaymentDetails):
            raise TypeError("payment must be a PaymentDetails")

    @classmethod
    def post(
        cls,
        *,
        id: int,
        pending_id: int,
        amount: int | None = None,
        payment: PaymentDetails | None = None,
    ) -> NewTransfer:
        """Post (settle) a pending transfer; a smaller ``amount`` releases the rest."""
        return cls(
            id=id,
            pending_id=pending_id,
            amount=amount,
            flags=TransferFlags.POST_PENDING_TRANSFER,
            payment=payment or NO_PAYMENT,
        )

    @classmethod
    def void(
        cls, *, id: int, pending_id: int, payment: PaymentDetails | None = None
    ) -> NewTransfer:
        """Void a pending transfer, releasing all of it."""
        return cls(
            id=id,
            pending_id=pending_id,
            flags=TransferFlags.VOID_PENDING_TRANSFER,
            payment=payment or NO_PAYMENT,
        )
