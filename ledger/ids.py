"""The one written form of a transfer id: 32 lower-case hex digits, zero-padded, no prefix.

Transfer ids are unsigned 128-bit integers (TigerBeetle's). Every command,
page and export writes them with ``format_transfer_id`` and every command
that takes one reads it with ``parse_transfer_id``, so an id copied from the
dashboard, ``farthing ledger export`` or ``farthing ledger reconcile`` is the
same text everywhere. It is also how the books store them
(``farthing.ledger.columns.HexUInt``).

The audit log's subjects (``transfer:<decimal id>``) are part of its hash
chain and stay as written; ``display_subject`` shows them in this form.
"""

from __future__ import annotations

import re

from farthing.ledger.columns import ID_MAX

__all__ = ["TRANSFER_ID_DIGITS", "display_subject", "format_transfer_id", "parse_transfer_id"]

TRANSFER_ID_DIGITS = 32
_HEX = re.compile(r"[0-9a-fA-F]{32}")
_TRANSFER_SUBJECT = re.compile(r"transfer:([0-9]{1,39})")


def format_transfer_id(transfer_id: int) -> str:
    """``255`` is ``"000000000000000000000000000000ff"``."""
    if type(transfer_id) is not int or not 0 <= transfer_id < 2**128:
        raise ValueError(f"a transfer id is an unsigned 128-bit int, not {transfer_id!r}")
    return format(transfer_id, "032x")


def parse_transfer_id(text: str) -> int | None:
    """The id written as 32 hex digits (either case), or None for anything else."""
    text = text.strip()
    if _HEX.fullmatch(text) is None:
        return None
    value = int(text, 16)
    return value if 0 < value <= ID_MAX else None


def display_subject(subject: str) -> str:
    """An audit subject for people: ``transfer:<decimal>`` shows its id in the one form."""
    found = _TRANSFER_SUBJECT.fullmatch(subject)
    if found is None:
        return subject
    value = int(found.group(1))
    if value >= 2**128:
        return subject
    return f"transfer:{format_transfer_id(value)}"
