"""The auth-capture facilitator's settlement journal: each operation's first outcome, by key.

Every settled operation is journaled under its idempotency key with a
fingerprint of what it was. A repeat with the same key and the same
operation answers the first outcome and sends nothing; the same key for
another operation is ``invalid_auth_capture_evm_idempotency_conflict``. An
outcome still pending (sent, no receipt yet) is resolved from the receipt
when it is asked again: mined, it becomes the success; reverted, the entry
goes and the caller may try again; still unmined, it stays pending and
nothing is sent twice. The journal keeps at most :data:`JOURNAL_SIZE_MAX`
entries, dropping the oldest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from farthing.paywall.schemes.auth_capture.reads import Refused
from farthing.paywall.schemes.auth_capture.types import ERR_IDEMPOTENCY_CONFLICT
from farthing.paywall.wire import SettleResult

__all__ = ["JOURNAL_SIZE_MAX", "JournalEntry", "SettleJournal"]

JOURNAL_SIZE_MAX: Final = 100_000


@dataclass(slots=True)
class JournalEntry:
    """One operation's outcome under its key."""

    fingerprint: bytes  # what the operation was: a different one may not reuse the key
    result: SettleResult
    pending_tx: str | None = None  # sent, receipt not seen yet


class SettleJournal:
    """The outcomes by idempotency key (in memory; the caller holds the facilitator's lock)."""

    def __init__(self) -> None:
        self._entries: dict[str, JournalEntry] = {}

    def __repr__(self) -> str:
        return f"SettleJournal({len(self._entries)} entries)"

    def replay(
        self,
        key: str,
        fingerprint: bytes,
        receipt: Callable[[str], Mapping[str, Any] | None],
    ) -> SettleResult | None:
        """The first outcome under ``key``; ``None`` when there is none to replay."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.fingerprint != fingerprint:
            raise Refused(
                ERR_IDEMPOTENCY_CONFLICT, "this idempotency key belongs to another operation"
            )
        if entry.pending_tx is None:
            return entry.result
        mined = receipt(entry.pending_tx)
        if mined is None:
            return entry.result  # still pending: never send twice
        if int(mined.get("status", 0)) == 1:
            resolved = replace(entry.result, success=True, reason=None, message=None)
            self._entries[key] = JournalEntry(fingerprint, resolved)
            return resolved
        del self._entries[key]  # reverted: nothing moved, the caller may try again
        return None

    def remember(self, key: str, entry: JournalEntry) -> None:
        """Journal ``entry`` under ``key``, dropping the oldest entry when full."""
        if len(self._entries) >= JOURNAL_SIZE_MAX:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = entry
