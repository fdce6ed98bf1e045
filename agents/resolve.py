"""Resolving possible spend from the chain, never by guessing.

A reservation left pending (the seller never answered after the payment was
sent) is decided by the authorization's on-chain state:

* **used** (the token logged ``AuthorizationUsed``): the money moved, so the
  reservation is posted with that transaction;
* **canceled**, or **unused after its window closed** (``validBefore`` has
  passed on the chain's clock, so it can never be used): no money moved, so
  it is voided;
* **unused inside its window**: still possible spend; it stays reserved,
  because whoever holds the signed authorization may still submit it.

``farthing ledger reconcile --resolve`` does the same for closed windows; this
module can also post a payment the moment its use is mined, without waiting
for the window to close. An ``upto`` reservation is decided the same way
from Permit2's nonce and the proxy's settlement
(``farthing.agents.ceilings.resolve_upto``): posted at what moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from farthing.agents.books import AgentBooks
from farthing.agents.ceilings import resolve_upto
from farthing.agents.reservations import open_payments, release, settle
from farthing.wallet.chain import Chain
from farthing.wallet.token import Stablecoin

__all__ = ["Resolution", "resolve_possible_spend"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What became of one open reservation."""

    payment_id: int
    action: Literal["posted", "voided", "pending"]
    result: str  # the ledger's result, or why it is still pending
    tx_hash: str | None = None


def resolve_possible_spend(
    books: AgentBooks,
    chain: Chain,
    *,
    payer: str,
    from_block: int = 0,
    now_s: int | None = None,
) -> list[Resolution]:
    """Resolve every open reservation of ``payer`` from the chain; see the module doc."""
    token = Stablecoin(chain, books.asset)
    now = chain.timestamp() if now_s is None else now_s
    # upto permits are Permit2's, not EIP-3009 authorizations: farthing.agents.ceilings.
    upto = resolve_upto(books, chain, payer=payer, from_block=from_block, now_s=now)
    resolutions = [Resolution(r.payment_id, r.action, r.result, r.tx_hash) for r in upto]
    for payment in open_payments(books):
        if any(r.payment_id == payment.payment_id for r in upto):
            continue
        if payment.nonce is None:
            resolutions.append(Resolution(payment.payment_id, "pending", "no_authorization_nonce"))
            continue
        outcome = token.authorization_outcome(payer, payment.nonce, from_block=from_block)
        if outcome.state == "used":
            result = settle(
                books,
                payment.payment_id,
                tx_hash=outcome.tx_hash,
                block_number=outcome.block_number,
            )
            resolutions.append(Resolution(payment.payment_id, "posted", result, outcome.tx_hash))
        elif outcome.state == "canceled" or (
            outcome.state == "unused"
            and payment.valid_before is not None
            and payment.valid_before <= now
        ):
            resolutions.append(
                Resolution(payment.payment_id, "voided", release(books, payment.payment_id))
            )
        elif outcome.state == "unused":
            resolutions.append(
                Resolution(payment.payment_id, "pending", "authorization_window_open")
            )
        else:
            resolutions.append(
                Resolution(payment.payment_id, "pending", "used_outside_scanned_blocks")
            )
    return resolutions
