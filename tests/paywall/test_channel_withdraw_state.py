"""The channel store takes no voucher a pending withdrawal or a refund in flight could leave unpaid.

Runs on a real SQLite file and on the PostgreSQL test server, with real
EIP-712 vouchers (the helpers of ``test_channel_state``). A chain snapshot
with a pending withdrawal of ``W`` lets vouchers up to ``balance - W`` in and
refuses the next one; a refund held on the row does the same for its amount
until a snapshot shows the refund nonce moved, or the hold is released. A
voucher decided on the row as it was before the hold is not written after
it. A hold is refused when a voucher was charged since the refund's voucher
was checked, or another refund landed.
"""

from __future__ import annotations

from farthing.paywall.schemes.batch_settlement.contract import ChannelSnapshot
from farthing.paywall.schemes.batch_settlement.refund_hold import hold_refund, release_refund
from farthing.paywall.schemes.batch_settlement.state import (
    ChannelStore,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.state.charge import swap_steps
from farthing.paywall.schemes.batch_settlement.state.swap import drive
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
    ERR_CUMULATIVE_EXCEEDS_BALANCE,
)
from tests.paywall.test_channel_state import PRICE, Channel, _charge, store, url

__all__ = ["store", "url"]  # the fixtures, shared with test_channel_state


def test_a_pending_withdrawal_leaves_only_what_it_cannot_take(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store, balance=10 * PRICE)
    assert isinstance(_charge(store, ch, ch.voucher(PRICE)), ChargeAccepted)
    store.mirror(ch.config, ChannelSnapshot(ch.id, 10 * PRICE, 0, 1_700_000_000, 6 * PRICE, 0))
    for n in (2, 3, 4):
        assert isinstance(_charge(store, ch, ch.voucher(n * PRICE)), ChargeAccepted)
    refused = _charge(store, ch, ch.voucher(5 * PRICE))
    assert isinstance(refused, ChargeRefused)
    assert refused.reason == ERR_CUMULATIVE_EXCEEDS_BALANCE and "withdrawal" in refused.detail
    record = store.get(ch.id)
    assert record is not None and record.charged == 4 * PRICE and record.spendable == 4 * PRICE
    # Finalized: the balance is what the withdrawal left, and nothing is pending.
    store.mirror(ch.config, ChannelSnapshot(ch.id, 4 * PRICE, 0, 0, 0, 0))
    again = store.get(ch.id)
    assert again is not None and again.withdraw_amount == 0 and again.spendable == 4 * PRICE


def test_a_refund_in_flight_holds_its_amount_until_it_lands(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store, balance=10 * PRICE)
    assert isinstance(_charge(store, ch, ch.voucher(PRICE)), ChargeAccepted)
    checked = store.get(ch.id)
    assert checked is not None
    held = hold_refund(store, checked, 9 * PRICE)
    assert not isinstance(held, ChargeRefused) and held.refunding == 9 * PRICE
    refused = _charge(store, ch, ch.voucher(2 * PRICE))
    assert isinstance(refused, ChargeRefused) and refused.reason == ERR_CUMULATIVE_EXCEEDS_BALANCE

    # The facilitator said it failed: the hold ends, and vouchers are taken again.
    release_refund(store, ch.id, checked.refund_nonce)
    assert isinstance(_charge(store, ch, ch.voucher(2 * PRICE)), ChargeAccepted)

    # A hold decided on a row that was charged since is refused with the state.
    stale = hold_refund(store, checked, 9 * PRICE)
    assert isinstance(stale, ChargeRefused) and stale.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
    assert stale.record is not None and stale.record.charged == 2 * PRICE

    # Held again; the refund lands (the nonce moves): the hold ends with it.
    now = store.get(ch.id)
    assert now is not None
    assert not isinstance(hold_refund(store, now, 8 * PRICE), ChargeRefused)
    store.mirror(ch.config, ChannelSnapshot(ch.id, 2 * PRICE, 2 * PRICE, 0, 0, 1))
    landed = store.get(ch.id)
    assert landed is not None and landed.refunding == 0 and landed.refund_nonce == 1
    busy = hold_refund(store, now, PRICE)  # signed at the old nonce: another refund landed
    assert isinstance(busy, ChargeRefused) and busy.reason == ERR_CHANNEL_BUSY


def test_a_voucher_decided_before_the_hold_is_not_written_after_it(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store, balance=10 * PRICE)
    assert isinstance(_charge(store, ch, ch.voucher(PRICE)), ChargeAccepted)
    before = store.get(ch.id)
    assert before is not None
    assert not isinstance(hold_refund(store, before, 9 * PRICE), ChargeRefused)
    # The compare-and-swap was decided on the row before the hold: it must not land.
    outcome = drive(swap_steps(store, before, ch.voucher(2 * PRICE), PRICE, PRICE), store._write)
    assert isinstance(outcome, ChargeRefused)
    assert outcome.reason == ERR_CUMULATIVE_EXCEEDS_BALANCE
    after = store.get(ch.id)
    assert after is not None and after.charged == PRICE
