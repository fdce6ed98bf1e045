"""A voucher decided on the row as this process last wrote it is exactly as safe as one decided on a read.

Runs the event loop's charge path (``charge_async``, the group committer) on
a real SQLite file with real EIP-712 vouchers; a second ``ChannelStore`` on
the same file stands for another server process. It proves that the row
this process keeps after each write is the row committed; that a channel
another process charged meanwhile is neither charged twice nor refused on
the stale copy (a refusal is only ever given on the row read back); that a
write decided on a copy whose ``signed_max`` another writer raised does not
land; and that the kept rows are bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from farthing.paywall.schemes.batch_settlement.state import (
    ChannelRecord,
    ChannelStore,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.state.swap import WrittenRows
from farthing.paywall.schemes.batch_settlement.wire import ERR_CUMULATIVE_AMOUNT_MISMATCH
from tests.paywall.test_channel_state import DOMAIN, NETWORK, PRICE, Channel


@pytest.fixture(name="database")
def database_fixture(tmp_path: Path) -> Path:
    return tmp_path / "paywall.sqlite"


def _open(database: Path) -> ChannelStore:
    return ChannelStore(f"sqlite:///{database}", domain=DOMAIN, network=NETWORK)


@pytest.fixture(name="ours")
def ours_fixture(database: Path) -> Iterator[ChannelStore]:
    store = _open(database)
    yield store
    store.dispose()


@pytest.fixture(name="theirs")
def theirs_fixture(database: Path, ours: ChannelStore) -> Iterator[ChannelStore]:
    store = _open(database)  # another server process on the same database
    yield store
    store.dispose()


async def _paid(store: ChannelStore, ch: Channel, ceiling: int) -> ChargeAccepted | ChargeRefused:
    """One voucher as the paywall takes it: held, then made final once answered."""
    outcome = await store.charge_async(
        ch.terms, ch.config, ch.voucher(ceiling), price=PRICE, actual=PRICE, hold_s=60.0
    )
    if isinstance(outcome, ChargeAccepted):
        assert outcome.hold is not None
        done = await store.update_hold_async(outcome.hold, charge=PRICE, known=outcome.record)
        assert done is not None
    return outcome


def _kept(store: ChannelStore, ch: Channel) -> ChannelRecord | None:
    return store._rows.get(ch.id)


def test_the_row_kept_after_each_write_is_the_row_committed(ours: ChannelStore) -> None:
    ch = Channel()
    ch.open(ours)

    async def run() -> None:
        for n in range(1, 6):
            assert isinstance(await _paid(ours, ch, n * PRICE), ChargeAccepted)
            kept, read = _kept(ours, ch), ours.get(ch.id)
            assert kept is not None and read is not None
            assert replace(kept, last_request_at_ns=None) == replace(read, last_request_at_ns=None)

    asyncio.run(run())
    record = ours.get(ch.id)
    assert record is not None and (record.charged, record.held) == (5 * PRICE, 0)


def test_a_channel_charged_elsewhere_is_charged_once_and_refused_only_on_a_read(
    ours: ChannelStore, theirs: ChannelStore
) -> None:
    ch = Channel()
    ch.open(ours)

    async def run() -> None:
        assert isinstance(await _paid(ours, ch, PRICE), ChargeAccepted)
        # Another process takes the next two vouchers: our kept row is stale.
        assert isinstance(await _paid(theirs, ch, 2 * PRICE), ChargeAccepted)
        assert isinstance(await _paid(theirs, ch, 3 * PRICE), ChargeAccepted)
        stale = _kept(ours, ch)
        assert stale is not None and stale.charged == PRICE
        # The next voucher is taken: our stale copy alone would have refused it.
        assert isinstance(await _paid(ours, ch, 4 * PRICE), ChargeAccepted)
        # A copy of a voucher they charged: a write decided on a stale copy would
        # miss, and the refusal carries the state as read.
        assert isinstance(await _paid(theirs, ch, 5 * PRICE), ChargeAccepted)
        copy = await _paid(ours, ch, 5 * PRICE)
        assert isinstance(copy, ChargeRefused) and copy.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
        assert copy.record is not None and copy.record.charged == 5 * PRICE

    asyncio.run(run())
    record = ours.get(ch.id)
    assert record is not None and (record.charged, record.signed_max) == (5 * PRICE, 5 * PRICE)


def test_a_write_decided_on_a_row_whose_signed_max_rose_since_does_not_land(
    ours: ChannelStore, database: Path
) -> None:
    ch = Channel()
    ch.open(ours)
    higher = ch.voucher(9 * PRICE)

    async def charge_second() -> ChargeAccepted | ChargeRefused:
        return await _paid(ours, ch, 2 * PRICE)

    assert isinstance(asyncio.run(_paid(ours, ch, PRICE)), ChargeAccepted)
    # Another writer keeps a higher voucher of the payer's (charged and held unchanged).
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE paywall_channel SET signed_max = ?, signature = ? WHERE channel_id = ?",
            (str(9 * PRICE), "0x" + higher.signature.hex(), "0x" + ch.id.hex()),
        )
    assert isinstance(asyncio.run(charge_second()), ChargeAccepted)
    record = ours.get(ch.id)
    assert record is not None and record.charged == 2 * PRICE
    # Decided on the row as read: the payer's highest voucher is still the one kept.
    assert (record.signed_max, record.signature) == (9 * PRICE, higher.signature)


def test_the_kept_rows_are_bounded_and_forget_only_their_own_write(ours: ChannelStore) -> None:
    ch = Channel()
    ch.open(ours)
    record = ours.get(ch.id)
    assert record is not None
    rows = WrittenRows(size_max=3)
    ids = [bytes([n]) * 32 for n in range(5)]
    for channel_id in ids:
        rows.expect(replace(record, channel_id=channel_id))
    assert [rows.get(i) is not None for i in ids] == [False, False, True, True, True]
    first = replace(record, channel_id=ids[4], charged=1)
    later = replace(record, channel_id=ids[4], charged=2)
    rows.expect(first)
    rows.expect(later)  # decided on first, queued after it
    rows.forget(first)  # first did not write: later's own outcome decides
    assert rows.get(ids[4]) is later
    rows.forget(later)
    assert rows.get(ids[4]) is None
