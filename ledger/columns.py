"""Numeric bounds of the books and the column type that stores 128-bit ids.

TigerBeetle's ids and ``user_data_128`` are unsigned 128-bit integers. Neither
SQLite (whose INTEGER is a signed 64-bit value) nor PostgreSQL's BIGINT can
hold one, so they are stored as fixed-width lowercase hex text: the width is
constant, so text order equals numeric order and an index on the column is
still an index on the number.

Amounts and balances are different: they live in BIGINT columns so that sums
and comparisons stay in SQL, which bounds them at 2**63 - 1 atomic units. For
USDC (6 decimals) that is 9.2 trillion dollars per balance. For an 18-decimal
token it is only 9.2 whole tokens, which is why the bound is enforced as a
result value (``amount_must_not_exceed_max``, ``overflows_*``) and documented
in docs/ledger.md rather than left to the database to reject.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["AMOUNT_MAX", "ID_MAX", "HexUInt"]

# TigerBeetle reserves both 0 and 2**128 - 1, so a valid id is 1..2**128 - 2.
ID_MAX = 2**128 - 2
# The largest amount or balance a BIGINT column holds on both backends.
AMOUNT_MAX = 2**63 - 1


class HexUInt(TypeDecorator[int]):
    """An unsigned integer of ``bits`` bits, stored as fixed-width hex text."""

    impl = String
    cache_ok = True

    def __init__(self, bits: int) -> None:
        if bits % 4:
            raise ValueError("bits must be a multiple of 4")
        self.bits = bits
        self.width = bits // 4
        self._format = f"0{self.width}x"
        super().__init__(length=self.width)

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if type(value) is not int or value < 0 or value.bit_length() > self.bits:
            raise ValueError(f"expected an unsigned {self.bits}-bit int, got {value!r}")
        return format(value, self._format)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value, 16)
