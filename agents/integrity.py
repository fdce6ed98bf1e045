"""After a run: do the books balance, and do they agree with the chain?

``ledger_balanced`` checks the double-entry sums (Σ debits = Σ credits, posted
and pending) and the hash-chained audit log (``farthing.ledger.verify``).
``reconcile_books`` runs the ledger's reconciliation of one agent's books
against the token's ``Transfer`` logs and, with ``resolve=True``, settles any
possible spend whose authorization window has closed from what the chain says.

The ledger scans the token's logs for the addresses on its own side of the
books (the agent's wallet, as the payer of its payments and the payee of its
deposits), so other agents' payments to the same seller, and every other mint
of the token, are none of this reconciliation's business.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from farthing.agents.books import AgentBooks
from farthing.ledger import Account, LedgerDatabase, verify
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconciliation import ReconciliationReport, reconcile
from farthing.ledger.tables import table_of
from farthing.wallet.chain import Chain

__all__ = ["BooksCheck", "check_books", "ledger_balanced", "reconcile_books"]

_accounts = table_of(Account)


def ledger_balanced(database: LedgerDatabase) -> bool:
    """Σ debits = Σ credits (posted and pending), and the audit log verifies."""
    a = _accounts.c
    with database.read() as session:
        sums = session.execute(
            select(
                func.coalesce(func.sum(a.debits_posted), 0),
                func.coalesce(func.sum(a.credits_posted), 0),
                func.coalesce(func.sum(a.debits_pending), 0),
                func.coalesce(func.sum(a.credits_pending), 0),
            )
        ).one()
        audit = verify(session=session)
    return sums[0] == sums[1] and sums[2] == sums[3] and audit.ok


def reconcile_books(
    books: AgentBooks,
    chain: Chain,
    *,
    from_block: int = 0,
    resolve: bool = False,
    now_s: int | None = None,
) -> ReconciliationReport:
    """The agent's books against the chain, from ``from_block`` to the head."""
    view = TokenChainView(chain, books.asset)
    return reconcile(books.database, view, from_block=from_block, resolve=resolve, now_s=now_s)


@dataclass(frozen=True, slots=True)
class BooksCheck:
    balanced: bool
    reconciliation: ReconciliationReport

    @property
    def breaks(self) -> int:
        return len(self.reconciliation.unresolved_breaks)


def check_books(books: AgentBooks, chain: Chain, *, from_block: int = 0) -> BooksCheck:
    """Both checks, as ``farthing demo`` reports them."""
    return BooksCheck(
        balanced=ledger_balanced(books.database),
        reconciliation=reconcile_books(books, chain, from_block=from_block),
    )
