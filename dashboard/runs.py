"""Reconciliation runs started from the dashboard, and the record of the last ones.

A run is ``farthing.ledger.reconciliation.reconcile`` over the chain named by
``--rpc-url`` (and ``--network``/``--token``), exactly what
``farthing ledger reconcile`` does without ``--resolve``: it reports and
changes nothing in the books. Each run's report is kept in
``dashboard_reconciliation_run``, created on first use next to the ledger's
tables (like the agents' tables), so the page shows the last run after a
restart, and who started it is also in the audit log.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, insert, select

from farthing.dashboard.actions import record_action
from farthing.dashboard.errors import DashboardConfigError
from farthing.dashboard.settings import DashboardSettings
from farthing.ledger.database import LedgerDatabase
from farthing.ledger.reconciliation import ReconciliationReport

__all__ = ["Reconciler", "ReconciliationRun", "ensure_runs_table", "last_run"]

_metadata = MetaData()
runs_table = Table(
    "dashboard_reconciliation_run",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_ns", BigInteger, nullable=False),
    Column("finished_ns", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("network", String(64), nullable=False),
    Column("token", String(42), nullable=False),
    Column("from_block", BigInteger, nullable=False),
    Column("to_block", BigInteger, nullable=False),
    Column("payments_checked", Integer, nullable=False),
    Column("break_count", Integer, nullable=False),
    Column("report", Text, nullable=False),  # JSON: breaks by kind, and each break
)


def ensure_runs_table(database: LedgerDatabase) -> None:
    with database.write() as session:
        _metadata.create_all(session.connection(), checkfirst=True)


@dataclass(frozen=True, slots=True)
class ReconciliationRun:
    id: int
    started_ns: int
    finished_ns: int
    actor: str
    network: str
    token: str
    from_block: int
    to_block: int
    payments_checked: int
    break_count: int
    by_kind: dict[str, int]
    breaks: list[dict[str, str | None]]


def _report_json(report: ReconciliationReport) -> str:
    items = [b.to_json() for b in report.breaks]
    return json.dumps({"by_kind": report.counts(), "breaks": items})


def _run(row: Any) -> ReconciliationRun:
    data = json.loads(row.report)
    return ReconciliationRun(
        row.id, row.started_ns, row.finished_ns, row.actor, row.network, row.token,
        row.from_block, row.to_block, row.payments_checked, row.break_count,
        data["by_kind"], data["breaks"],
    )  # fmt: skip


def last_run(database: LedgerDatabase) -> ReconciliationRun | None:
    with database.read() as session:
        row = session.execute(select(runs_table).order_by(runs_table.c.id.desc()).limit(1)).first()
    return None if row is None else _run(row)


class Reconciler:
    """Runs reconciliation against the configured chain, one run at a time."""

    def __init__(self, database: LedgerDatabase, settings: DashboardSettings) -> None:
        self._database = database
        self._settings = settings
        self._busy = threading.Lock()

    @property
    def configured(self) -> bool:
        return self._settings.rpc_url is not None or self._settings.network is not None

    def run(self, *, actor: str) -> tuple[ReconciliationRun | None, str | None]:
        """Run now; returns the run, or why it did not run (as a sentence)."""
        if not self.configured:
            return None, "start the dashboard with --rpc-url to reconcile with a chain"
        if not self._busy.acquire(blocking=False):
            return None, "a reconciliation run is already in progress"
        try:
            return self._run(actor), None
        except DashboardConfigError as exc:
            return None, str(exc)
        finally:
            self._busy.release()

    def _run(self, actor: str) -> ReconciliationRun:
        # The chain stack is imported on use: the pages never need it.
        from farthing.errors import FarthingError
        from farthing.ledger.chainview import TokenChainView
        from farthing.ledger.reconciliation import reconcile
        from farthing.wallet.settings import WalletSettings
        from farthing.wallet.target import resolve_target

        started = time.time_ns()
        try:
            target = resolve_target(
                WalletSettings(),
                network=self._settings.network,
                rpc_url=self._settings.rpc_url,
                token=self._settings.token,
            )
        except FarthingError as exc:
            raise DashboardConfigError(f"cannot open the chain: {exc}") from exc
        try:
            report = reconcile(self._database, TokenChainView(target.chain, target.asset))
        except FarthingError as exc:
            raise DashboardConfigError(f"reconciliation failed: {exc}") from exc
        finally:
            target.chain.close()
        row = {
            "started_ns": started,
            "finished_ns": time.time_ns(),
            "actor": actor,
            "network": report.network,
            "token": report.token_address,
            "from_block": report.from_block,
            "to_block": report.to_block,
            "payments_checked": report.payments_checked,
            "break_count": len(report.breaks),
            "report": _report_json(report),
        }
        with self._database.write() as session:
            new_id = session.execute(insert(runs_table).values(row).returning(runs_table.c.id))
            run_id = int(new_id.scalar_one())
        record_action(
            self._database,
            actor=actor,
            action="reconciliation_run",
            subject=f"reconciliation:{run_id}",
            details={
                "network": report.network,
                "token": report.token_address,
                "from_block": report.from_block,
                "to_block": report.to_block,
                "break_count": len(report.breaks),
            },
        )
        return _run(type("Row", (), {"id": run_id, **row})())
