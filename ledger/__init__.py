"""farthing.ledger: double-entry books of agent payments, in TigerBeetle's model.

Accounts hold four balances (debits and credits, pending and posted);
transfers move an amount between two accounts of the same ledger and are
never changed. A payment is a pending transfer (the reservation) that is
later posted, voided or expired. Budgets are accounts whose debits may not
exceed their credits, plus rolling limits checked in the same database
transaction. Every event is appended to a hash-chained audit log.

Start with ``docs/ledger.md``. The usual flow::

    database = LedgerDatabase(LedgerSettings())
    upgrade_database(database)
    with database.write() as session:           # the caller's database transaction
        result = reserve_payment(session=session, payment_id=new_id(), ...)
    if result is not CreateTransferResult.OK: ...   # e.g. "exceeds_budget"
"""

from __future__ import annotations

from farthing.ledger.budget import BudgetPolicy
from farthing.ledger.codes import AccountCode, TransferCode
from farthing.ledger.columns import AMOUNT_MAX, ID_MAX
from farthing.ledger.database import LedgerDatabase, normalise_database_url
from farthing.ledger.errors import (
    LedgerConfigError,
    LedgerDatabaseError,
    LedgerDatabaseLocked,
    LedgerDatabaseUnavailable,
    LedgerError,
    LedgerSchemaError,
)
from farthing.ledger.flags import AccountFlags, TransferFlags
from farthing.ledger.ids import (
    TRANSFER_ID_DIGITS,
    display_subject,
    format_transfer_id,
    parse_transfer_id,
)
from farthing.ledger.inputs import NewAccount, NewTransfer, PaymentDetails, derived_id, new_id
from farthing.ledger.migration import (
    check_schema,
    head_revision,
    schema_revision,
    upgrade_database,
)
from farthing.ledger.payments import (
    EXPIRY_GRACE_S,
    release_payment,
    reservation,
    reserve_payment,
    resolution_id,
    settle_payment,
)
from farthing.ledger.reconcile import (
    Break,
    BreakKind,
    ChainView,
    LedgerPayment,
    TokenTransferEvent,
    find_breaks,
    load_payments,
)
from farthing.ledger.report import (
    BudgetRow,
    RevenueRow,
    SpendDimension,
    SpendRow,
    budget_report,
    export_rows,
    format_amount,
    ledger_decimals,
    revenue_report,
    spend_report,
    transfer_kind,
)
from farthing.ledger.repository import (
    create_accounts,
    create_transfers,
    expire_pending,
    get_budget,
    lookup_accounts,
    lookup_transfers,
    register_asset,
    set_budget,
)
from farthing.ledger.results import (
    CreateAccountResult,
    CreateTransferResult,
    RegisterAssetResult,
    SetBudgetResult,
)
from farthing.ledger.settings import LedgerSettings
from farthing.ledger.tables import (
    Account,
    Asset,
    AuditEntry,
    AuditHead,
    Budget,
    BudgetUsage,
    PendingTransfer,
    Transfer,
)
from farthing.ledger.verification import AuditProblem, VerifyReport, verify

__all__ = [
    "AMOUNT_MAX",
    "EXPIRY_GRACE_S",
    "ID_MAX",
    "TRANSFER_ID_DIGITS",
    "Account",
    "AccountCode",
    "AccountFlags",
    "Asset",
    "AuditEntry",
    "AuditHead",
    "AuditProblem",
    "Break",
    "BreakKind",
    "Budget",
    "BudgetPolicy",
    "BudgetRow",
    "BudgetUsage",
    "ChainView",
    "CreateAccountResult",
    "CreateTransferResult",
    "LedgerConfigError",
    "LedgerDatabase",
    "LedgerDatabaseError",
    "LedgerDatabaseLocked",
    "LedgerDatabaseUnavailable",
    "LedgerError",
    "LedgerPayment",
    "LedgerSchemaError",
    "LedgerSettings",
    "NewAccount",
    "NewTransfer",
    "PaymentDetails",
    "PendingTransfer",
    "RegisterAssetResult",
    "RevenueRow",
    "SetBudgetResult",
    "SpendDimension",
    "SpendRow",
    "TokenTransferEvent",
    "Transfer",
    "TransferCode",
    "TransferFlags",
    "VerifyReport",
    "budget_report",
    "check_schema",
    "create_accounts",
    "create_transfers",
    "derived_id",
    "display_subject",
    "expire_pending",
    "export_rows",
    "find_breaks",
    "format_amount",
    "format_transfer_id",
    "get_budget",
    "head_revision",
    "ledger_decimals",
    "load_payments",
    "lookup_accounts",
    "lookup_transfers",
    "new_id",
    "normalise_database_url",
    "parse_transfer_id",
    "register_asset",
    "release_payment",
    "reservation",
    "reserve_payment",
    "resolution_id",
    "revenue_report",
    "schema_revision",
    "set_budget",
    "settle_payment",
    "spend_report",
    "transfer_kind",
    "upgrade_database",
    "verify",
]
