"""The agent's channel records (table ``agent_channel``) and the lease that lets one request sign at a time.

A cumulative voucher must be exactly ``chargedCumulativeAmount + price``, so
two requests on one channel cannot be in flight together. A request therefore
**leases** a channel (:func:`acquire`) from choosing it until the seller's
answer is booked (:func:`release`). The lease is taken under the ledger's
write lock (``lock_head``: SQLite's write lock, PostgreSQL's head-row lock),
so processes sharing one agent's books take turns; a lease whose process died
simply runs out (``lease_until_ns``).

An agent may hold up to ``slots_max`` channels to one seller (same receiver,
authorizer, token and withdraw delay). Slot *n*'s channel ``salt`` is derived
from the agent, the seller's terms and *n* (:func:`slot_salt`), so after a
lost database the same channel ids are found again on chain (cold start,
``farthing.agents.channels.recovery``). Busy slots make a new one: this is how several
processes buy from one seller at once.

Amounts are ints of atomic units. ``balance`` is deposited minus returned,
``charged`` the spec's ``chargedCumulativeAmount`` as the agent has checked it,
``signed_max`` the highest voucher ever signed (never lowered).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import insert, select, update

from farthing.agents.books import AgentBooks
from farthing.agents.tables import agent_channel, ensure_tables
from farthing.ledger.audit import lock_head
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig

__all__ = [
    "STATUSES",
    "ChannelRow",
    "Lease",
    "acquire",
    "get_channel",
    "list_channels",
    "release",
    "slot_salt",
    "update_channel",
]

STATUSES: Final = ("open", "stopped", "withdrawing", "closed")


def slot_salt(agent_id: str, config_without_salt: ChannelConfig, slot: int) -> bytes:
    """Slot ``slot``'s channel salt: the same agent and terms always give the same channel."""
    c = config_without_salt
    text = "\x1f".join(
        [
            "farthing.agents.channel",
            agent_id,
            c.payer.lower(),
            c.payer_authorizer.lower(),
            c.receiver.lower(),
            c.receiver_authorizer.lower(),
            c.token.lower(),
            str(c.withdraw_delay_s),
            str(slot),
        ]
    )
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel as the agent's books remember it."""

    channel_id: str
    agent_id: str
    network: str
    escrow: str
    config: ChannelConfig
    slot: int
    resource: str | None
    offer: dict[str, Any] | None
    balance: int
    charged: int
    signed_max: int
    total_claimed: int
    status: str
    reason: str | None
    withdraw_after: int | None
    inflight_id: int | None
    lease_until_ns: int
    lease_owner: str | None

    @property
    def available(self) -> int:
        """Deposited and not yet charged: what the next vouchers can still spend."""
        return max(0, self.balance - self.charged)

    def to_json(self) -> dict[str, Any]:
        return {
            "channel_id": self.channel_id,
            "network": self.network,
            "receiver": self.config.receiver,
            "receiver_authorizer": self.config.receiver_authorizer,
            "token": self.config.token,
            "withdraw_delay_s": self.config.withdraw_delay_s,
            "slot": self.slot,
            "status": self.status,
            "reason": self.reason,
            "balance": str(self.balance),
            "charged": str(self.charged),
            "signed_max": str(self.signed_max),
            "total_claimed": str(self.total_claimed),
            "available": str(self.available),
            "withdraw_after": self.withdraw_after,
            "resource": self.resource,
        }


def _row(raw: Any) -> ChannelRow:
    return ChannelRow(
        channel_id=raw.channel_id,
        agent_id=raw.agent_id,
        network=raw.network,
        escrow=raw.escrow,
        config=ChannelConfig.from_wire(json.loads(raw.config)),
        slot=int(raw.slot),
        resource=raw.resource,
        offer=json.loads(raw.offer) if raw.offer else None,
        balance=int(raw.balance),
        charged=int(raw.charged),
        signed_max=int(raw.signed_max),
        total_claimed=int(raw.total_claimed),
        status=raw.status,
        reason=raw.reason,
        withdraw_after=None if raw.withdraw_after is None else int(raw.withdraw_after),
        inflight_id=None if raw.inflight_id is None else int(raw.inflight_id, 16),
        lease_until_ns=int(raw.lease_until_ns),
        lease_owner=raw.lease_owner,
    )


def get_channel(books: AgentBooks, channel_id: str) -> ChannelRow | None:
    ensure_tables(books.database)
    with books.database.read() as session:
        raw = session.execute(
            select(agent_channel).where(agent_channel.c.channel_id == channel_id.lower())
        ).first()
    return None if raw is None else _row(raw)


def list_channels(books: AgentBooks) -> list[ChannelRow]:
    """The agent's channels, by receiver and slot."""
    ensure_tables(books.database)
    with books.database.read() as session:
        rows = session.execute(
            select(agent_channel)
            .where(agent_channel.c.agent_id == books.agent_id)
            .order_by(agent_channel.c.receiver, agent_channel.c.slot)
        ).all()
    return [_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Lease:
    """A channel held by one request: ``row`` is None for a slot never used (or forgotten)."""

    channel_id: str
    slot: int
    config: ChannelConfig
    owner: str
    row: ChannelRow | None


def acquire(
    books: AgentBooks,
    *,
    configs: list[ChannelConfig],
    channel_ids: list[str],
    network: str,
    escrow: str,
    price: int,
    owner: str,
    lease_s: float,
) -> Lease | None:
    """Lease the best free channel among the slots: funded first, then any open one, then a new slot.

    A new slot gets a placeholder row (balance 0, leased) so no other process
    takes it too. None when every slot is busy or stopped.
    """
    ensure_tables(books.database)
    now = time.time_ns()
    until = now + int(lease_s * 1e9)
    with books.database.write() as session:
        lock_head(session)
        raws = {
            r.channel_id: r
            for r in session.execute(
                select(agent_channel).where(agent_channel.c.channel_id.in_(channel_ids))
            )
        }
        free_funded: list[int] = []
        free_open: list[int] = []
        missing: list[int] = []
        for slot, cid in enumerate(channel_ids):
            raw = raws.get(cid)
            if raw is None:
                missing.append(slot)
                continue
            if raw.lease_until_ns > now or raw.status not in ("open", "closed"):
                continue
            if raw.status == "open" and int(raw.balance) - int(raw.charged) >= price:
                free_funded.append(slot)
            else:
                free_open.append(slot)
        for slot in (*free_funded, *free_open):
            cid = channel_ids[slot]
            session.execute(
                update(agent_channel)
                .where(agent_channel.c.channel_id == cid)
                .values(lease_until_ns=until, lease_owner=owner, updated_ns=now)
            )
            row = _row(raws[cid])
            return Lease(cid, slot, configs[slot], owner, row)
        if not missing:
            return None
        slot = missing[0]
        cid = channel_ids[slot]
        session.execute(
            insert(agent_channel),
            [
                {
                    "channel_id": cid,
                    "agent_id": books.agent_id,
                    "network": network,
                    "escrow": escrow.lower(),
                    "config": json.dumps(configs[slot].to_wire()),
                    "receiver": configs[slot].receiver.lower(),
                    "slot": slot,
                    "balance": 0,
                    "charged": 0,
                    "signed_max": 0,
                    "total_claimed": 0,
                    "status": "open",
                    "lease_until_ns": until,
                    "lease_owner": owner,
                    "updated_ns": now,
                }
            ],
        )
        return Lease(cid, slot, configs[slot], owner, None)


def update_channel(books: AgentBooks, channel_id: str, **values: Any) -> None:
    """Change a channel's record (amounts as ints; ``inflight_id`` as an int or None)."""
    if "inflight_id" in values and values["inflight_id"] is not None:
        values["inflight_id"] = f"{values['inflight_id']:032x}"
    if "offer" in values and values["offer"] is not None:
        values["offer"] = json.dumps(values["offer"])
    values["updated_ns"] = time.time_ns()
    with books.database.write() as session:
        session.execute(
            update(agent_channel)
            .where(agent_channel.c.channel_id == channel_id.lower())
            .values(**values)
        )


def release(books: AgentBooks, lease: Lease, **values: Any) -> None:
    """End a lease, writing ``values`` with it; a lease already taken over is left alone."""
    if "inflight_id" in values and values["inflight_id"] is not None:
        values["inflight_id"] = f"{values['inflight_id']:032x}"
    if "offer" in values and values["offer"] is not None:
        values["offer"] = json.dumps(values["offer"])
    values.update(lease_until_ns=0, lease_owner=None, updated_ns=time.time_ns())
    with books.database.write() as session:
        session.execute(
            update(agent_channel)
            .where(
                agent_channel.c.channel_id == lease.channel_id,
                agent_channel.c.lease_owner == lease.owner,
            )
            .values(**values)
        )
