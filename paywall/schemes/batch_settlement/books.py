"""Channel revenue in the merchant's books: per voucher as earned, per claim and settle as on chain.

:class:`ChannelBookkeeper` sits between the channel paywall, the claimer and
a :class:`~farthing.paywall.records.books.ChannelRevenueBook`:

- :meth:`ChannelBookkeeper.earned` books one request's charge (receivable →
  revenue) after the handler answered and the unearned rest was released;
- :meth:`ChannelBookkeeper.sync` reads the escrow's ``Claimed`` events for
  the channels in the store and the ``Settled`` events for their receivers,
  and books each (debit → credit: claimed → receivable, cash → claimed).
  Booking from the events, not from what we asked for, makes the books
  follow what landed:
  a claim the chain made a no-op books nothing, and a claim sent by anyone
  else (the SDK's facilitator, a cooperative refund) is booked too.

Every id is derived (see :mod:`farthing.paywall.records.books`), so a sync repeated
over the same blocks, or two processes syncing at once, book each event once.
A booking failure is logged and reported, never raised into a paid request:
the payer was served, and the channel reconciliation shows what is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode as abi_decode

from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.records.books import (
    BookingResult,
    ChannelAsset,
    ChannelCharge,
    ChannelClaim,
    ChannelRevenueBook,
    ChannelSettle,
)
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS
from farthing.paywall.schemes.batch_settlement.state import ChannelRecord, ChannelStore
from farthing.wallet.address import checksum

__all__ = [
    "TOPICS_PER_FILTER_MAX",
    "BookedEvents",
    "ChannelBookkeeper",
    "address_topic",
    "chunked",
]

log = logging.getLogger("farthing.paywall")


# How many channel ids one eth_getLogs filter names: public RPCs limit the
# size of a topic list, and a receiver may have thousands of channels.
TOPICS_PER_FILTER_MAX: Final = 100


def chunked(items: list[bytes]) -> list[list[bytes]]:
    """``items`` in lists of at most :data:`TOPICS_PER_FILTER_MAX`, for log filters."""
    return [
        items[i : i + TOPICS_PER_FILTER_MAX] for i in range(0, len(items), TOPICS_PER_FILTER_MAX)
    ]


def address_topic(address: str) -> bytes:
    """An indexed address as a log topic (left-padded to 32 bytes)."""
    return bytes(12) + bytes.fromhex(checksum(address)[2:])


@dataclass(frozen=True, slots=True)
class BookedEvents:
    """One sync: how many ``Claimed`` and ``Settled`` events were booked (or already were)."""

    claims: int = 0
    settles: int = 0
    failures: tuple[str, ...] = ()


class ChannelBookkeeper:
    """Books a receiver's channel revenue; ``assets`` maps token address → how to register it."""

    def __init__(
        self,
        book: ChannelRevenueBook,
        store: ChannelStore,
        assets: tuple[ChannelAsset, ...] = (),
    ) -> None:
        if not isinstance(book, ChannelRevenueBook):
            raise PaywallConfigError("channel books must implement ChannelRevenueBook")
        self.book = book
        self.store = store
        self.assets: dict[str, ChannelAsset] = {checksum(a.token): a for a in assets}

    def __repr__(self) -> str:
        return f"ChannelBookkeeper({self.book!r})"

    def know(self, asset: ChannelAsset) -> None:
        self.assets.setdefault(checksum(asset.token), asset)

    def earned(
        self,
        asset: ChannelAsset,
        record: ChannelRecord,
        cumulative: int,
        amount: int,
        resource: str,
    ) -> BookingResult | None:
        """Book ``amount`` earned by the voucher for ``cumulative`` (nothing for a zero charge)."""
        self.know(asset)
        if amount <= 0:
            return None
        charge = ChannelCharge(
            asset=asset,
            receiver=record.config.receiver,
            payer=record.config.payer,
            channel_id="0x" + record.channel_id.hex(),
            cumulative=cumulative,
            reserved_at_ns=record.last_request_at_ns or 0,
            amount=amount,
            resource=resource[:2048],
        )
        result = self.book.record_channel_charge(charge)
        if not result.booked:
            log.warning("a channel charge was not booked: %s", result.reason)
        return result

    def sync(self, *, from_block: int = 0, to_block: int | None = None) -> BookedEvents:
        """Book the escrow's ``Claimed`` and ``Settled`` events for our channels in the range."""
        escrow = self.store.escrow
        if escrow is None:
            return BookedEvents(failures=("no escrow: nothing to read the chain with",))
        records = {r.channel_id: r for r in self.store.records()}
        if not records:
            return BookedEvents()
        failures: list[str] = []
        claims = settles = 0
        claimed_logs = [
            entry
            for chunk in chunked(list(records))
            for entry in escrow.chain.logs(
                escrow.address, [ESCROW_EVENT_TOPICS["Claimed"], chunk], from_block, to_block
            )
        ]
        for entry in claimed_logs:
            record = records[entry.topics[1]]
            asset = self.assets.get(record.config.token)
            if asset is None:
                failures.append(f"claim {entry.tx_hash}: unknown token {record.config.token}")
                continue
            amount, total = abi_decode(["uint128", "uint128"], entry.data)
            claim = ChannelClaim(
                asset=asset,
                receiver=record.config.receiver,
                channel_id="0x" + record.channel_id.hex(),
                total_claimed=int(total),
                amount=int(amount),
                tx_hash=entry.tx_hash,
            )
            claims += self._count(self.book.record_channel_claim(claim), failures)
        receivers = sorted({r.config.receiver for r in records.values()})
        settled_logs = escrow.chain.logs(
            escrow.address,
            [ESCROW_EVENT_TOPICS["Settled"], [address_topic(a) for a in receivers]],
            from_block,
            to_block,
        )
        for entry in settled_logs:
            receiver = checksum("0x" + entry.topics[1][12:].hex())
            token = checksum("0x" + entry.topics[2][12:].hex())
            asset = self.assets.get(token)
            if asset is None:
                failures.append(f"settle {entry.tx_hash}: unknown token {token}")
                continue
            (amount,) = abi_decode(["uint128"], entry.data)
            settle = ChannelSettle(asset, receiver, int(amount), entry.tx_hash, entry.log_index)
            settles += self._count(self.book.record_channel_settle(settle), failures)
        return BookedEvents(claims, settles, tuple(failures))

    @staticmethod
    def _count(result: BookingResult, failures: list[Any]) -> int:
        if result.booked:
            return 1
        failures.append(f"booking refused: {result.reason}")
        return 0
