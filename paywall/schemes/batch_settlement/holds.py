"""A channel charge is a lease: held while its request is answered, final once the answer is sent.

The paywall takes a voucher's ceiling before the handler runs (so a replayed
or concurrent copy never reaches the handler), but the payer owes it only for
an answer it got. So the charge is first **held** on the channel row
(``held``, with a deadline ``held_until_ns``), not added to ``charged``:

- a 2xx answer makes it final once the answer was handed to the server:
  ``charged`` grows by what the handler charged and the hold is freed, in one
  compare-and-swap (one more write a voucher, folded into the group commit);
- a handler that fails or answers non-2xx frees the hold: nothing is charged;
- a process that dies (SIGKILL, OOM, power loss) frees nothing, so its holds
  **lapse** at their deadline: the next charge on the row drops them (and
  bumps ``hold_epoch``), so a retry of the same voucher is served, and
  charged, once; a later voucher gets the corrective 402 with the state
  before the dead request.

The voucher a payer must sign next builds on ``charged + held`` (the live
holds): the spec's ``chargedCumulativeAmount``. A copy of a voucher whose
request is still held gets ``channel_busy``, not the corrective 402, so a
payer never books as spent an answer still being produced. Claims, refunds,
the books and reconciliation count ``charged`` only: a held charge is never
claimed.

``hold_epoch`` is the lease's owner token: every write that frees or settles
a hold names the epoch it was taken in, so nothing a request does after its
hold lapsed and was dropped lands (its answer is then not sent, or, if it
already was, it went out unpaid: the payer is never charged for what it did
not get).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from farthing.invariant import invariant

if TYPE_CHECKING:
    from farthing.paywall.schemes.batch_settlement.state.record import ChannelRecord
    from farthing.paywall.schemes.batch_settlement.vouchers import SignedVoucher

__all__ = [
    "CHARGE_LEASE_S_DEFAULT",
    "HeldCharge",
    "Hold",
    "charged_after",
    "held_after",
    "hold_params",
    "hold_sql",
    "live_view",
]

# How long a held charge waits for its answer before it lapses. It must cover
# the handler; a handler that outlives half of it makes its charge final
# before anything is sent (see ChannelPaywall), so a slow answer is safe too.
CHARGE_LEASE_S_DEFAULT: Final = 60.0


@dataclass(frozen=True, slots=True)
class Hold:
    """One request's held charge: ``amount`` on ``channel_id``, taken in ``epoch``."""

    channel_id: bytes
    amount: int
    epoch: int
    taken_at_ns: int
    until_ns: int

    def late(self, now_ns: int) -> bool:
        """Past half its lease: another process may soon count it lapsed (clocks differ)."""
        return now_ns >= self.taken_at_ns + (self.until_ns - self.taken_at_ns) // 2


@dataclass(frozen=True, slots=True)
class HeldCharge:
    """A voucher's ceiling held for a streamed answer, whose charge is known only as it ends.

    What the stream's meter (:mod:`~farthing.paywall.schemes.batch_settlement.stream`)
    needs to make it final: the hold, the row as the charge wrote it, the
    offer, the payer, the voucher's cumulative ceiling and a deposit's transaction.
    """

    hold: Hold
    known: ChannelRecord
    offer: Any  # ChannelRequirements
    payer: str
    cumulative: int
    deposit_tx: str


def live_view(record: ChannelRecord, now_ns: int) -> ChannelRecord:
    """The row as the next charge must see it: lapsed holds dropped, their epoch over."""
    if record.held > 0 and record.held_until_ns <= now_ns:
        return replace(record, held=0, held_until_ns=0, hold_epoch=record.hold_epoch + 1)
    return record


def charged_after(
    view: ChannelRecord,
    voucher: SignedVoucher,
    *,
    price: int,
    actual: int,
    now_ns: int,
    hold_ns: int | None,
) -> ChannelRecord:
    """The row after ``voucher`` is accepted: held for ``hold_ns``, or charged ``actual`` at once.

    The payer's highest voucher is kept: after a lapsed hold is dropped the
    next voucher may be lower than one already signed.
    """
    signed = voucher.max_claimable_amount >= view.signed_max
    kept: dict[str, Any] = {
        "signed_max": voucher.max_claimable_amount if signed else view.signed_max,
        "signature": voucher.signature if signed else view.signature,
        "last_request_at_ns": now_ns,
    }
    if hold_ns is None:
        return replace(view, charged=view.charged + actual, **kept)
    # The row's deadline is the latest live hold's (a freed row's old one counts for nothing).
    until_ns = view.held_until_ns if view.held > 0 else 0
    return replace(
        view, held=view.held + price, held_until_ns=max(until_ns, now_ns + hold_ns), **kept
    )


def held_after(
    record: ChannelRecord, hold: Hold, *, charge: int, keep: int, until_ns: int = 0
) -> ChannelRecord | None:
    """The row once ``hold`` moves ``charge`` into ``charged`` and keeps ``keep`` held.

    ``until_ns`` renews the row's lease to at least then (a stream still
    being sent). ``None`` when the hold is gone: it lapsed and a later charge
    dropped it.
    """
    if record.hold_epoch != hold.epoch:
        return None
    invariant(record.held >= hold.amount, "a live hold is part of the row's held total")
    return replace(
        record,
        charged=record.charged + charge,
        held=record.held - hold.amount + keep,
        held_until_ns=max(record.held_until_ns, until_ns),
    )


def hold_sql(dialect: str, table: str) -> str:
    """The compare-and-swap UPDATE that settles, shrinks or frees a hold."""

    def p(name: str) -> str:
        return f":{name}" if dialect == "sqlite" else f"%({name})s"

    return (
        f"UPDATE {table} SET charged = {p('charged')}, held = {p('held')}, "
        # A renewal only ever moves the deadline later, whatever another wrote meanwhile.
        f"held_until_ns = CASE WHEN held_until_ns > {p('held_until_ns')} THEN held_until_ns "
        f"ELSE {p('held_until_ns')} END, updated_at_ns = {p('now')} "
        f"WHERE channel_id = {p('channel_id')} AND charged = {p('was_charged')} "
        f"AND held = {p('was_held')} AND hold_epoch = {p('epoch')}"
    )


def hold_params(
    key: str, before: ChannelRecord, after: ChannelRecord, epoch: int, now: int
) -> dict[str, Any]:
    """The parameters of :func:`hold_sql` for one compare-and-swap."""
    return {
        "channel_id": key,
        "charged": str(after.charged),
        "held": str(after.held),
        "held_until_ns": after.held_until_ns,
        "now": now,
        "was_charged": str(before.charged),
        "was_held": str(before.held),
        "epoch": epoch,
    }
