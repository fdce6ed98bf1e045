"""A channel database written before the newer columns existed opens, gains them, and keeps its rows.

A real SQLite file holds ``paywall_channel`` as older code made it (every
column but those in ``CHANNEL_ADDED_COLUMNS``) with one channel row in it.
Opening a ``ChannelStore`` on it adds the missing columns with defaults
that mean "nothing pending", the old row reads back unchanged, and opening
it a second time (or from a second store at once) changes nothing.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import MetaData, Table, create_engine, inspect

from farthing.paywall.schemes.batch_settlement.columns import CHANNEL_ADDED_COLUMNS
from farthing.paywall.schemes.batch_settlement.state import CHANNELS, ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, ChannelDomain
from farthing.wallet.signer import LocalSigner


def test_an_old_channel_table_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    added = {name for name, _ in CHANNEL_ADDED_COLUMNS}
    old = MetaData()
    Table(CHANNELS.name, old, *(c._copy() for c in CHANNELS.columns if c.name not in added))
    domain = ChannelDomain(31337)
    payer = LocalSigner.generate().address
    config = ChannelConfig(
        payer, payer, LocalSigner.generate().address, LocalSigner.generate().address,
        LocalSigner.generate().address, 900, secrets.token_bytes(32),
    )  # fmt: skip
    channel_id = "0x" + domain.channel_id(config).hex()
    engine = create_engine(url)
    old.create_all(engine)
    row = {
        "channel_id": channel_id, "network": "eip155:31337", "payer": config.payer,
        "payer_authorizer": config.payer_authorizer, "receiver": config.receiver,
        "receiver_authorizer": config.receiver_authorizer, "token": config.token,
        "withdraw_delay_s": 900, "salt": "0x" + config.salt.hex(), "balance": "5000",
        "total_claimed": "1000", "withdraw_requested_at": 0, "refund_nonce": "0",
        "onchain_synced_at_ns": 1, "charged": "2000", "signed_max": "2000",
        "signature": "0x" + "11" * 65, "last_request_at_ns": None, "updated_at_ns": 1,
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(old.tables[CHANNELS.name].insert().values(**row))
    engine.dispose()

    for _ in range(2):
        store = ChannelStore(url, domain=domain, network="eip155:31337")
        try:
            (record,) = store.records()
        finally:
            store.dispose()
        assert (record.balance, record.total_claimed, record.charged) == (5000, 1000, 2000)
        assert record.withdraw_amount == 0 and record.refunding == 0
        assert record.spendable == 5000
    engine = create_engine(url)
    try:
        present = {c["name"] for c in inspect(engine).get_columns(CHANNELS.name)}
    finally:
        engine.dispose()
    assert added <= present
