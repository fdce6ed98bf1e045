"""Account and transfer flags, with TigerBeetle's bit positions.

Keeping TigerBeetle's bit numbers means a flags value reads the same in its
documentation and in ours. ``EXPIRE_PENDING_TRANSFER`` is Farthing's own: the
ledger writes it when a pending transfer's timeout passes, so an expiry is a
visible, immutable row rather than a silent state change. It sits far above
TigerBeetle's bits so it can never collide with one they add.
"""

from __future__ import annotations

from enum import IntFlag

__all__ = ["AccountFlags", "TransferFlags"]


class AccountFlags(IntFlag):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2


class TransferFlags(IntFlag):
    NONE = 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5
    # Written only by the ledger's expiry sweep; clients may not set it.
    EXPIRE_PENDING_TRANSFER = 1 << 15


# Flags that resolve an earlier pending transfer.
RESOLVING_FLAGS = (
    TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.EXPIRE_PENDING_TRANSFER
)
# Flags of a transfer that moved no money itself: a reservation, or the void
# or expiry of one. A transfer with none of them is posted money (the post of
# a reservation, or a single-phase transfer).
NOT_POSTED_FLAGS = (
    TransferFlags.PENDING
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.EXPIRE_PENDING_TRANSFER
)
CLIENT_ACCOUNT_FLAGS = (
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
)
CLIENT_TRANSFER_FLAGS = (
    TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
    | TransferFlags.BALANCING_DEBIT
    | TransferFlags.BALANCING_CREDIT
)
