"""The chain's side of a channel row: mirroring a snapshot, reading one, and recovery.

A row mirrors the escrow's ``channels``/``pendingWithdrawals``/``refundNonce``
views as last read (:func:`mirror_snapshot`, after a deposit, claim, refund
or a read). A new row starts at ``charged = totalClaimed``; a claim on chain
beyond what the row booked raises ``charged`` to it (never charge that part
again); a moved refund nonce ends a refund hold; a new timed withdrawal on a
channel with unclaimed earnings wakes the claimer (``withdrawal_seen``).

When the server lost its state, :func:`recover_channels` rebuilds it from
the chain (``ChannelCreated`` events for the configs, the ``channels`` view
for the amounts): ``charged`` restarts at ``totalClaimed``, and vouchers that
were never claimed are forfeited, as the spec says.
"""

from __future__ import annotations

import time
from typing import Final

from eth_abi.abi import decode as abi_decode
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from farthing.invariant import invariant
from farthing.paywall.schemes.batch_settlement.contract import (
    ESCROW_EVENT_TOPICS,
    ChannelSnapshot,
)
from farthing.paywall.schemes.batch_settlement.state.database import ChannelDatabase
from farthing.paywall.schemes.batch_settlement.state.record import ChannelRecord, ChargeRefused
from farthing.paywall.schemes.batch_settlement.state.table import CHANNELS, mirror_values
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig
from farthing.paywall.schemes.batch_settlement.wire import ERR_CHANNEL_STATE_READ_FAILED
from farthing.wallet.address import checksum
from farthing.wallet.errors import WalletError

__all__ = ["apply_mirror", "insert_row", "mirror_snapshot", "read_chain", "recover_channels"]

_CONFIG_ABI: Final = ["(address,address,address,address,address,uint40,bytes32)"]


def insert_row(
    db: ChannelDatabase, connection: Connection, config: ChannelConfig, snapshot: ChannelSnapshot
) -> None:
    """Create a row from the chain, if none exists: ``charged`` starts at ``totalClaimed``."""
    now = time.time_ns()
    insert = sqlite_insert if db.dialect == "sqlite" else pg_insert
    values = {
        "channel_id": db._key(snapshot.channel_id),
        "network": db.network,
        "payer": config.payer,
        "payer_authorizer": config.payer_authorizer,
        "receiver": config.receiver,
        "receiver_authorizer": config.receiver_authorizer,
        "token": config.token,
        "withdraw_delay_s": config.withdraw_delay_s,
        "salt": "0x" + config.salt.hex(),
        "charged": str(snapshot.total_claimed),
        "signed_max": str(snapshot.total_claimed),
        "signature": None,
        "last_request_at_ns": None,
        "refunding": "0",
        **mirror_values(snapshot, now),
    }
    connection.execute(insert(CHANNELS).values(**values).on_conflict_do_nothing())


def apply_mirror(
    db: ChannelDatabase, connection: Connection, current: ChannelRecord, snapshot: ChannelSnapshot
) -> None:
    """Write ``snapshot`` over the mirrored columns of ``current`` (its row, locked)."""
    values = mirror_values(snapshot, time.time_ns())
    if snapshot.total_claimed > current.charged:
        # Claimed on chain beyond what we booked (state restored from an old
        # backup): the chain is the floor, never charge that part again.
        values["charged"] = str(snapshot.total_claimed)
        values["signed_max"] = str(max(current.signed_max, snapshot.total_claimed))
    started = snapshot.withdraw_requested_at
    new_withdrawal = started != 0 and started != current.withdraw_requested_at
    if new_withdrawal and current.charged > snapshot.total_claimed:
        db.withdrawal_seen.set()
    if snapshot.refund_nonce > current.refund_nonce:
        # A refund landed (ours or another): the balance read is after it.
        values["refunding"] = "0"
    connection.execute(
        update(CHANNELS)
        .where(CHANNELS.c.channel_id == db._key(current.channel_id))
        .values(**values)
    )


def mirror_snapshot(
    db: ChannelDatabase, config: ChannelConfig, snapshot: ChannelSnapshot
) -> ChannelRecord:
    """Record a chain snapshot of a channel; the row after."""
    invariant(
        db.domain.channel_id(config) == snapshot.channel_id,
        "a snapshot belongs to its config's channel",
    )
    with db._begin() as connection:
        insert_row(db, connection, config, snapshot)
        current = db._locked(connection, snapshot.channel_id)
        invariant(current is not None, "the row exists after its insert")
        assert current is not None  # for mypy; the invariant above is the check
        apply_mirror(db, connection, current, snapshot)
        after = db._locked(connection, snapshot.channel_id)
    db._rows.drop(snapshot.channel_id)
    assert after is not None
    return after


def read_chain(db: ChannelDatabase, channel_id: bytes) -> ChannelSnapshot | ChargeRefused:
    """The escrow's view of a channel now, or the refusal when it could not be read."""
    invariant(db.escrow is not None, "reading the chain needs an escrow")
    assert db.escrow is not None
    try:
        return db.escrow.snapshot(channel_id)
    except WalletError:
        return ChargeRefused(ERR_CHANNEL_STATE_READ_FAILED, "the escrow could not be read")


def recover_channels(db: ChannelDatabase, receiver: str, from_block: int) -> list[ChannelRecord]:
    """Rebuild ``receiver``'s channel rows from the chain (see ``ChannelStore.recover``)."""
    invariant(db.escrow is not None, "recovery reads the chain through an escrow")
    assert db.escrow is not None
    receiver = checksum(receiver)
    logs = db.escrow.chain.logs(
        db.escrow.address, [ESCROW_EVENT_TOPICS["ChannelCreated"]], from_block
    )
    configs: dict[bytes, ChannelConfig] = {}
    for log in logs:
        (fields,) = abi_decode(_CONFIG_ABI, log.data)
        payer, payer_auth, to, to_auth, token, delay, salt = fields
        config = ChannelConfig(payer, payer_auth, to, to_auth, token, int(delay), bytes(salt))
        channel_id = db.domain.channel_id(config)
        if config.receiver == receiver and log.topics[1] == channel_id:
            configs[channel_id] = config
    return [
        mirror_snapshot(db, config, db.escrow.snapshot(channel_id))
        for channel_id, config in configs.items()
    ]
