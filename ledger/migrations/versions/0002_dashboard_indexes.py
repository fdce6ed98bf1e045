"""Indexes the dashboard's figures need: budget usage by hour.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The overview sums every budget's usage buckets of the rolling day and of
today (``farthing.dashboard.overview``). The primary key of
``ledger_budget_usage`` starts with the account, so without this index
those sums scan every bucket ever written, which grows by one per agent,
payee and hour forever. ``benchmarks/bench_dashboard.py`` measures it.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_budget_usage_hour", "ledger_budget_usage", ["hour", "payee_account_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_budget_usage_hour", table_name="ledger_budget_usage")
