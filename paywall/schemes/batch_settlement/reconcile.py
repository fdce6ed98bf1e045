"""The merchant's channel reconciliation: the escrow's events against the channel books.

Beside the token reconciliation (``farthing ledger reconcile``, which matches
``Transfer`` logs), this matches what channels did on chain with what
:mod:`farthing.paywall.schemes.batch_settlement.books` booked, per channel:

- ``earned_differs``: the receivable's debits (booked as earned) are not what
  the channel row says was charged;
- ``claims_differ``: the ``Claimed`` events' total is not what the books
  moved out of the receivable (a claim landed that was never booked, or the
  other way round);
- ``claimed_above_earned``: the chain's ``totalClaimed`` is above what we
  booked as earned;
- ``unclaimed_past_withdrawal``: the payer's timed withdrawal was finalized
  while earned money was still unclaimed: that money went back to the payer
  and is lost to us (the claimer must claim within the withdraw delay);
- ``charged_above_balance``: the channel row charged more than the escrow
  holds for it now (``chain`` is the balance, ``books`` the charged total):
  requests were served that no claim can ever be paid for (a withdrawal or a
  refund took the money first). The claimer claims what is there and
  reports the rest as a shortfall;

and per (receiver, token): ``settles_differ`` when the ``Settled`` events'
total is not the cash the books received.

Earned but unclaimed money is not a break: it is the receivable, reported
per channel in :attr:`ChannelReconciliation.receivables`.

A request in flight holds its ceiling reserved on the channel row until its
handler answers, so ``earned_differs`` is only meaningful at rest: run it
when the paywall is idle, or read a difference that vanishes on a rerun as
a request that was in flight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode as abi_decode

from farthing.ledger import lookup_accounts
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.records.books import ChannelAsset, LedgerRevenueBook, account_id
from farthing.paywall.schemes.batch_settlement.books import address_topic, chunked
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.wallet.address import checksum

__all__ = ["ChannelBreak", "ChannelReconciliation", "reconcile_channel_books"]


@dataclass(frozen=True, slots=True)
class ChannelBreak:
    """One difference: ``subject`` is a channel id, or ``receiver/token`` for settles."""

    subject: str
    kind: str
    chain: int
    books: int

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "chain": str(self.chain),
            "books": str(self.books),
        }


@dataclass(frozen=True, slots=True)
class ChannelReconciliation:
    """The breaks, and each channel's receivable (earned, not yet claimed; atomic units)."""

    breaks: tuple[ChannelBreak, ...] = ()
    receivables: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "breaks": [b.to_json() for b in self.breaks],
            "receivables": {k: str(v) for k, v in self.receivables.items()},
        }


def _balances(book: LedgerRevenueBook, ids: list[int]) -> dict[int, tuple[int, int]]:
    """``{account id: (debits posted, credits posted)}``; a missing account is (0, 0)."""
    with book.database.read() as session:
        found = {a.id: (a.debits_posted, a.credits_posted) for a in lookup_accounts(
            session=session, ids=ids)}  # fmt: skip
    return {i: found.get(i, (0, 0)) for i in ids}


def reconcile_channel_books(
    store: ChannelStore, book: LedgerRevenueBook, *, from_block: int = 0
) -> ChannelReconciliation:
    """Match the escrow's ``Claimed``, ``Settled`` and ``WithdrawFinalized`` events with the books."""
    escrow = store.escrow
    if escrow is None:
        raise PaywallConfigError(
            "channel reconciliation reads the chain: the store needs an escrow"
        )
    records = store.records()
    if not records:
        return ChannelReconciliation()
    ids = [r.channel_id for r in records]

    def events(name: str, second: list[bytes]) -> list[Any]:
        topic = ESCROW_EVENT_TOPICS[name]
        return [
            entry
            for chunk in chunked(second)
            for entry in escrow.chain.logs(escrow.address, [topic, chunk], from_block)
        ]

    claimed_on_chain: dict[bytes, int] = defaultdict(int)
    for entry in events("Claimed", ids):
        amount, _total = abi_decode(["uint128", "uint128"], entry.data)
        claimed_on_chain[entry.topics[1]] += int(amount)
    finalized = {entry.topics[1] for entry in events("WithdrawFinalized", ids)}
    receivers = sorted({r.config.receiver for r in records})
    settled_on_chain: dict[tuple[str, str], int] = defaultdict(int)
    for entry in events("Settled", [address_topic(a) for a in receivers]):
        receiver = checksum("0x" + entry.topics[1][12:].hex())
        token = checksum("0x" + entry.topics[2][12:].hex())
        settled_on_chain[(receiver, token)] += int(abi_decode(["uint128"], entry.data)[0])

    def ledger_of(token: str) -> int:
        return book.ledger_of(ChannelAsset(store.network, token, 0, ""))

    receivable_ids = {
        r.channel_id: account_id("receivable", ledger_of(r.config.token), "0x" + r.channel_id.hex())
        for r in records
    }
    pairs = sorted({(r.config.receiver, r.config.token) for r in records})
    cash_ids = {
        pair: account_id("cash", ledger_of(pair[1]), f"{pair[0]}/{pair[1]}") for pair in pairs
    }
    balances = _balances(book, [*receivable_ids.values(), *cash_ids.values()])

    breaks: list[ChannelBreak] = []
    receivables: dict[str, int] = {}
    for record in records:
        cid = "0x" + record.channel_id.hex()
        earned, claimed_books = balances[receivable_ids[record.channel_id]]
        balance, total_claimed = escrow.channel(record.channel_id)
        on_chain = claimed_on_chain.get(record.channel_id, 0)
        if earned != record.charged:
            breaks.append(ChannelBreak(cid, "earned_differs", record.charged, earned))
        if on_chain != claimed_books:
            breaks.append(ChannelBreak(cid, "claims_differ", on_chain, claimed_books))
        if total_claimed > earned:
            breaks.append(ChannelBreak(cid, "claimed_above_earned", total_claimed, earned))
        if record.channel_id in finalized and earned > total_claimed:
            breaks.append(ChannelBreak(cid, "unclaimed_past_withdrawal", total_claimed, earned))
        if record.charged > balance:
            breaks.append(ChannelBreak(cid, "charged_above_balance", balance, record.charged))
        receivables[cid] = earned - claimed_books
    for pair, account in cash_ids.items():
        cash, _ = balances[account]
        swept = settled_on_chain.get(pair, 0)
        if swept != cash:
            breaks.append(ChannelBreak("/".join(pair), "settles_differ", swept, cash))
    return ChannelReconciliation(tuple(breaks), receivables)
