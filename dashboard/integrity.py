"""The audit panel's state: the chain's head, and the last full verification.

Verifying replays the whole log (``farthing.ledger.verify``), which takes
seconds on a large ledger, far too long for a page. So a background thread
verifies on start, then again every ``verify_interval_s`` and whenever the
head moves, and the page shows the latest result with the head it covered.
"The audit log verifies" is therefore always stated with its time and head.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from farthing.ledger.audit import HEAD_ID
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.errors import LedgerError
from farthing.ledger.tables import AuditHead, table_of
from farthing.ledger.verification import VerifyReport, verify

__all__ = ["AuditState", "Verifier"]

_head = table_of(AuditHead)


@dataclass(frozen=True, slots=True)
class AuditState:
    """The last verification's result, or ``running`` before the first one ends."""

    status: str  # "ok", "broken", "running" or "error"
    head_sequence: int | None
    head_hash: str | None
    verified_at_s: float | None
    report: VerifyReport | None
    error: str | None = None


class Verifier:
    """Verifies the audit chain in a daemon thread and keeps the latest result."""

    def __init__(self, database: LedgerDatabase, *, interval_s: float) -> None:
        self._database = database
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state = AuditState("running", None, None, None, None)
        self._thread: threading.Thread | None = None

    def head(self) -> tuple[int, str] | None:
        with self._database.read() as session:
            row = session.execute(
                select(_head.c.sequence, _head.c.hash).where(_head.c.id == HEAD_ID)
            ).first()
        return None if row is None else (int(row.sequence), str(row.hash))

    @property
    def state(self) -> AuditState:
        with self._lock:
            return self._state

    def run_once(self) -> AuditState:
        try:
            head = self.head()
            with self._database.read() as session:
                report = verify(session=session)
        except LedgerError as exc:
            state = AuditState("error", None, None, time.time(), None, str(exc))
        else:
            state = AuditState(
                "ok" if report.ok else "broken",
                None if head is None else head[0],
                None if head is None else head[1],
                time.time(),
                report,
            )
        with self._lock:
            self._state = state
        return state

    def request(self) -> None:
        """Verify again now (the thread wakes up)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="audit-verifier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            verified = self.run_once()
            deadline = time.monotonic() + self._interval_s
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self._wake.wait(timeout=min(1.0, self._interval_s)):
                    self._wake.clear()
                    break
                try:
                    head = self.head()
                except LedgerError:
                    continue
                if head is not None and head[0] != verified.head_sequence:
                    break
