"""A streamed charge's meter makes what was sent final as it goes, renews its hold, and stops once the hold is gone.

The meter (``ChannelMeter``) runs against a real SQLite channel store whose
channel was opened through the gateway on the memory chain. Its hold is
taken as the paywall takes it (``ChannelStore.charge`` with ``hold_s``). A
checkpoint moves what was reported sent into ``charged`` and keeps the rest
held with a later deadline; the final charge is capped at the ceiling and at
least what is already final. A hold left to lapse and dropped by another
request stops the meter: ``progress`` answers False and ``finish`` charges
nothing more than was final before.
"""

from __future__ import annotations

import time

import anyio
import pytest

from farthing.paywall.schemes.batch_settlement.holds import HeldCharge, live_view
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions, ChannelPaywall
from farthing.paywall.schemes.batch_settlement.state import ChannelTerms
from farthing.paywall.schemes.batch_settlement.stream import ChannelMeter
from farthing.paywall.schemes.batch_settlement.vouchers import sign_voucher
from tests.inference.fake_vllm import FakeVllm
from tests.inference.test_gateway_metered import (
    DELAY_S,
    Metered,
    metered_fixture,  # noqa: F401 - the fixture, used by name
)
from tests.inference.test_gateway_stream import Buyer
from tests.inference.test_gateway_stream_attacks import Channel

pytestmark = pytest.mark.anyio

CEILING = 100


def paywall(metered: Metered) -> ChannelPaywall:
    options = ChannelOptions(metered.store, metered.authorizer, withdraw_delay_s=DELAY_S)
    return ChannelPaywall(options, metered.facilitator)


def hold(metered: Metered, hold_s: float) -> HeldCharge:
    """The next voucher's ceiling held on the channel, as the paywall holds it."""
    store = metered.store
    read = store.get(metered.channel_id)
    assert read is not None
    record = live_view(read, time.time_ns())  # a lapsed hold counts for nothing
    voucher = sign_voucher(
        metered.env.payer, store.domain, metered.channel_id, record.charged + record.held + CEILING
    )
    terms = ChannelTerms(
        metered.env.merchant, metered.authorizer.address, metered.env.asset.address, DELAY_S
    )
    accepted = store.charge(
        terms, metered.config, voucher, price=CEILING, actual=CEILING, hold_s=hold_s
    )
    assert accepted.hold is not None, accepted  # type: ignore[union-attr]
    asset = metered.env.asset
    offer = paywall(metered).offer(
        network=asset.network, asset=asset.address, amount=CEILING, pay_to=metered.env.merchant,
        max_timeout_seconds=60, name=asset.name, version=asset.version,
    )  # fmt: skip
    return HeldCharge(
        accepted.hold,  # type: ignore[union-attr]
        accepted.record,  # type: ignore[union-attr]
        offer,
        metered.env.payer.address,
        voucher.max_claimable_amount,
        "",
    )


def meter(metered: Metered, held: HeldCharge, lease_s: float) -> ChannelMeter:
    return ChannelMeter(paywall(metered), held, lease_s=lease_s)


@pytest.fixture(name="opened")
async def opened_fixture(metered: Metered, fake_vllm: FakeVllm) -> Metered:
    channel = Channel(metered, fake_vllm, metered.gateway(fake_vllm), Buyer(metered))
    await channel.open()
    return metered


async def test_checkpoints_make_what_was_sent_final_and_renew_the_hold(opened: Metered) -> None:
    store = opened.store
    before = store.get(opened.channel_id)
    assert before is not None
    held = hold(opened, hold_s=1.0)
    counting = meter(opened, held, lease_s=1.0)
    assert await counting.progress(30)
    await counting.checkpoint()
    row = store.get(opened.channel_id)
    assert row is not None
    assert (row.charged - before.charged, row.held) == (30, CEILING - 30)
    assert row.held_until_ns > held.hold.until_ns  # renewed from the checkpoint
    assert await counting.progress(10**9)  # reported above the ceiling: capped
    await counting.checkpoint()
    row = store.get(opened.channel_id)
    assert row is not None and (row.charged - before.charged, row.held) == (CEILING, 0)
    receipt = await counting.finish(20)  # below what is final already: stays at it
    assert receipt.amount == CEILING and receipt.final
    row = store.get(opened.channel_id)
    assert row is not None and (row.charged - before.charged, row.held) == (CEILING, 0)


async def test_a_hold_that_lapsed_and_was_dropped_stops_the_meter(opened: Metered) -> None:
    store = opened.store
    before = store.get(opened.channel_id)
    assert before is not None
    held = hold(opened, hold_s=0.05)
    lapsed = meter(opened, held, lease_s=0.05)
    assert await lapsed.progress(40)
    await anyio.sleep(0.1)
    # Another request on the channel drops the lapsed hold (its epoch is over).
    other = hold(opened, hold_s=60.0)
    await lapsed.checkpoint()
    assert not await lapsed.progress(50)  # stop sending
    receipt = await lapsed.finish(50)
    assert (receipt.amount, receipt.final) == (0, False)
    row = store.get(opened.channel_id)
    assert row is not None
    assert row.charged == before.charged and row.held == other.hold.amount
    assert time.time_ns() < row.held_until_ns  # the other request's hold is untouched
