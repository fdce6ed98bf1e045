"""The audit log's export: every entry as stored, streamed, with its transfer id beside it.

``subject`` and ``payload`` are exactly what the hash chain commits to, so
the export can be re-verified elsewhere; a transfer's subject keeps the
decimal id it was hashed with, and the ``transfer_id`` column gives the same
id in the one written form (``farthing.ledger.ids``), as every page shows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi.responses import StreamingResponse
from sqlalchemy import select

from farthing.dashboard.listing import Listing
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.ids import display_subject
from farthing.ledger.tables import AuditEntry, table_of

__all__ = ["AUDIT_COLUMNS", "audit_log_response"]

AUDIT_COLUMNS = ("sequence", "timestamp_ns", "kind", "subject", "transfer_id", "payload",
                 "prev_hash", "hash")  # fmt: skip
_entries = table_of(AuditEntry)
_PREFIX = "transfer:"


def _transfer_id(subject: str) -> str:
    shown = display_subject(subject)
    return shown.removeprefix(_PREFIX) if shown != subject else ""


def audit_log_response(database: LedgerDatabase, fmt: str, cap: int) -> StreamingResponse:
    """The first ``cap`` entries as CSV or JSON, streamed from one read."""

    def rows() -> Iterator[str]:
        with database.read() as s:
            query = select(_entries).order_by(_entries.c.sequence).limit(cap)
            first = True
            if fmt == "csv":
                yield Listing("audit", "", AUDIT_COLUMNS).to_csv()
            else:
                yield '{"table":"audit","columns":' + json.dumps(list(AUDIT_COLUMNS)) + ',"rows":['
            for entry in s.execute(query.execution_options(yield_per=2_000)):
                cells = {c: str(getattr(entry, c)) for c in AUDIT_COLUMNS if c != "transfer_id"}
                cells["transfer_id"] = _transfer_id(entry.subject)
                if fmt == "csv":
                    yield Listing("audit", "", AUDIT_COLUMNS, [cells]).to_csv().split("\n", 1)[1]
                else:
                    yield ("" if first else ",") + json.dumps({c: cells[c] for c in AUDIT_COLUMNS})
                first = False
            if fmt == "json":
                yield "]}"

    return StreamingResponse(
        rows(),
        media_type="text/csv" if fmt == "csv" else "application/json",
        headers={"content-disposition": f'attachment; filename="audit-log.{fmt}"'},
    )
