"""After a run: do the books balance, and do they agree with the chain?

``ledger_balanced`` checks the double-entry sums (Σ debits = Σ credits, posted
and pending) and the hash-chained audit log (``farthing.ledger.verify``).
``reconcile_books`` runs the ledger's reconciliation of one agent's books
against the token's ``Transfer`` logs and, with ``resolve=True``, settles any
possible spend whose authorization window has closed from what the chain says.

The ledger's reconciliation scans every address its payments name, which
suits a merchant's books. An agent's books name its payees and, for minted
funding, the zero address: scanning those would report every other payment a
seller received, and every mint of the token, as ``missing_in_ledger``.
:class:`WalletChainView` keeps the scan to the agent's own wallet, which is
exactly the set of transfers its books must account for.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from farthing.agents.books import AgentBooks
from farthing.ledger import Account, LedgerDatabase, verify
from farthing.ledger.chainview import TokenChainView
from farthing.ledger.reconcile import TokenTransferEvent
from farthing.ledger.reconciliation import ReconciliationReport, reconcile
from farthing.ledger.tables import table_of
from farthing.wallet.chain import Chain
from farthing.wallet.money import Asset

__all__ = ["BooksCheck", "WalletChainView", "check_books", "ledger_balanced", "reconcile_books"]

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


class WalletChainView(TokenChainView):
    """The token's transfers into and out of one wallet, whatever addresses the books name."""

    def __init__(self, chain: Chain, asset: Asset, wallet: str) -> None:
        super().__init__(chain, asset)
        self.wallet = wallet.lower()

    def token_transfers(
        self,
        *,
        token_address: str,
        addresses: Collection[str],
        from_block: int,
        to_block: int,
    ) -> Sequence[TokenTransferEvent]:
        return super().token_transfers(
            token_address=token_address,
            addresses={self.wallet},
            from_block=from_block,
            to_block=to_block,
        )


def reconcile_books(
    books: AgentBooks,
    chain: Chain,
    *,
    wallet: str,
    from_block: int = 0,
    resolve: bool = False,
    now_s: int | None = None,
) -> ReconciliationReport:
    """The agent's books against its wallet's transfers, from ``from_block`` to the head."""
    view = WalletChainView(chain, books.asset, wallet)
    return reconcile(books.database, view, from_block=from_block, resolve=resolve, now_s=now_s)


@dataclass(frozen=True, slots=True)
class BooksCheck:
    balanced: bool
    reconciliation: ReconciliationReport

    @property
    def breaks(self) -> int:
        return len(self.reconciliation.unresolved_breaks)


def check_books(books: AgentBooks, chain: Chain, *, wallet: str, from_block: int = 0) -> BooksCheck:
    """Both checks, as ``farthing demo`` reports them."""
    return BooksCheck(
        balanced=ledger_balanced(books.database),
        reconciliation=reconcile_books(books, chain, wallet=wallet, from_block=from_block),
    )
