"""The paid path: a voucher charged (or held) on its channel row, and a hold made final.

:class:`ChargeRequest` declares a charge's parameters once; ``ChannelStore.charge``
and ``ChannelStore.charge_async`` both take them (:func:`called_with`) and
share one decision, :func:`charge_steps`. It checks the voucher against the
offer's terms and the config (pure, before any lock), then, on a known row
whose chain mirror is fresh, decides on the row as read and writes it with
one compare-and-swap (:mod:`~farthing.paywall.schemes.batch_settlement.state.swap`):
any number of threads or processes may charge one channel, and they take
turns. A row that keeps changing, or whose mirror is stale or missing, is
charged under its lock (:func:`charge_locked`: SQLite takes its write lock
at ``BEGIN IMMEDIATE``; PostgreSQL locks the row with ``SELECT … FOR
UPDATE``), the chain read first, never under the lock.

Dynamic price: the handler may charge ``actual`` up to the ceiling ``price``.
``charged`` grows by ``actual`` only, and the next voucher is checked against
``charged + ceiling``. With ``hold_s`` the ceiling is **held** instead
(:mod:`farthing.paywall.schemes.batch_settlement.holds`): :func:`hold_steps`
later makes it final, shrinks it or frees it.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, cast

import anyio.to_thread
from sqlalchemy import update

from farthing.invariant import invariant
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.schemes.batch_settlement.holds import (
    Hold,
    charged_after,
    held_after,
    hold_params,
    live_view,
)
from farthing.paywall.schemes.batch_settlement.state.checks import check_voucher, refusal
from farthing.paywall.schemes.batch_settlement.state.database import ChannelDatabase
from farthing.paywall.schemes.batch_settlement.state.mirror import (
    apply_mirror,
    insert_row,
    read_chain,
)
from farthing.paywall.schemes.batch_settlement.state.record import (
    NO_DEPOSIT,
    ChannelRecord,
    ChannelTerms,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.state.swap import (
    Swap,
    WrittenRows,
    drive,
    drive_async,
)
from farthing.paywall.schemes.batch_settlement.state.table import CHANNELS
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, SignedVoucher
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE,
)

__all__ = [
    "ChargeRequest",
    "Contended",
    "called_with",
    "charge_locked",
    "charge_now",
    "charge_on_loop",
    "charge_steps",
    "hold_steps",
    "swap_steps",
]

# Compare-and-swap rounds before a charge falls back to locking the row.
_SWAP_ATTEMPTS: Final = 8

_P = ParamSpec("_P")
_Q = TypeVar("_Q")
_R = TypeVar("_R")
_S = TypeVar("_S")

_Outcome = ChargeAccepted | ChargeRefused


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One request's charge: ``voucher`` pays a ceiling of ``price`` and the handler charged ``actual``.

    ``signature_verified`` says the facilitator verified a smart-wallet
    voucher; ``checked`` that :func:`check_voucher` already passed on these
    exact ``terms``, ``config`` and ``voucher``; ``hold_s`` holds the ceiling
    for that long instead of charging ``actual``.
    """

    terms: ChannelTerms
    config: ChannelConfig
    voucher: SignedVoucher
    _: KW_ONLY
    price: int
    actual: int
    signature_verified: bool = False
    checked: bool = False
    hold_s: float | None = None


def called_with(
    make: Callable[_P, _Q],
) -> Callable[[Callable[[_S, _Q], _R]], Callable[Concatenate[_S, _P], _R]]:
    """A method that takes ``make``'s parameters and is handed what ``make`` builds from them.

    ``ChannelStore.charge`` and ``charge_async`` are both declared
    ``@called_with(ChargeRequest)``: one declaration of the parameters, so the
    two call forms cannot drift apart (for mypy and for ``inspect`` alike).
    """

    def decorate(method: Callable[[_S, _Q], _R]) -> Callable[Concatenate[_S, _P], _R]:
        def call(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            return method(self, make(*args, **kwargs))

        async def call_async(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> Any:
            return await cast(Awaitable[Any], method(self, make(*args, **kwargs)))

        # An async method stays a coroutine function (inspect, anyio and asyncio check).
        if inspect.iscoroutinefunction(method):
            call = cast(Callable[Concatenate[_S, _P], _R], call_async)
        functools.update_wrapper(call, method)
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        call.__signature__ = inspect.signature(make).replace(  # type: ignore[attr-defined]
            parameters=[self_parameter, *inspect.signature(make).parameters.values()],
            return_annotation=inspect.signature(method).return_annotation,
        )
        return call

    return decorate


@dataclass(frozen=True, slots=True)
class Contended:
    """The compare-and-swap gave up, or cannot start (no fresh row): lock the row."""

    record: ChannelRecord | None


def _hold_ns(hold_s: float | None) -> int | None:
    if hold_s is None:
        return None
    if isinstance(hold_s, bool) or not isinstance(hold_s, (int, float)) or not 0 < hold_s <= 86400:
        raise PaywallConfigError("hold_s must be more than 0 and at most 86400 s")
    return int(hold_s * 1e9)


def _admit(db: ChannelDatabase, request: ChargeRequest) -> ChargeRefused | None:
    """What needs no row: the amounts' types, the voucher's checks, actual within price."""
    price, actual = request.price, request.actual
    if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
        raise PaywallConfigError("price must be a positive int of atomic units")
    if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
        raise PaywallConfigError("actual must be a non-negative int of atomic units")
    if not request.checked:
        refused = check_voucher(
            db,
            request.terms,
            request.config,
            request.voucher,
            signature_verified=request.signature_verified,
        )
        if refused is not None:
            return refused
    if actual > price:
        return ChargeRefused(
            ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE, "the handler charged more than the ceiling"
        )
    return None


def _hot(db: ChannelDatabase, record: ChannelRecord | None) -> bool:
    """A known channel whose chain mirror is fresh: no chain read, no lock."""
    return record is not None and (
        db.escrow is None or time.time_ns() - record.onchain_synced_at_ns <= db.state_ttl_ns
    )


def _accepted(
    view: ChannelRecord,
    after: ChannelRecord,
    price: int,
    actual: int,
    now: int,
    hold_ns: int | None,
) -> ChargeAccepted:
    """The outcome of a written charge, checked against the row it was decided on."""
    if hold_ns is None:
        invariant(after.charged == view.charged + actual, "the charge was recorded once")
        return ChargeAccepted(after, actual)
    invariant(
        after.held == view.held + price and after.charged == view.charged,
        "the hold was recorded once",
    )
    hold = Hold(after.channel_id, price, after.hold_epoch, now, now + hold_ns)
    return ChargeAccepted(after, price, hold)


def _swap(db: ChannelDatabase, before: ChannelRecord, after: ChannelRecord, now: int) -> Swap:
    params = {
        "channel_id": db._key(before.channel_id),
        "charged": str(after.charged),
        "signed_max": str(after.signed_max),
        "signature": None if after.signature is None else "0x" + after.signature.hex(),
        "now": now,
        "was_charged": str(before.charged),
        "was_balance": str(before.balance),
        "was_total_claimed": str(before.total_claimed),
        "was_withdraw_requested_at": before.withdraw_requested_at,
        "was_synced_at_ns": before.onchain_synced_at_ns,
        "held": str(after.held),
        "held_until_ns": after.held_until_ns,
        "hold_epoch": after.hold_epoch,
        "was_held": str(before.held),
        "was_hold_epoch": before.hold_epoch,
        "was_refunding": str(before.refunding),
        "was_held_until_ns": before.held_until_ns,
        "was_signed_max": str(before.signed_max),
        "was_withdraw_amount": str(before.withdraw_amount),
    }
    return Swap(db._sql_swap, params, after)


def _decide(
    record: ChannelRecord, voucher: SignedVoucher, price: int, actual: int, hold_ns: int | None
) -> tuple[int, ChannelRecord, ChannelRecord] | ChargeRefused:
    """The charge decided on ``record`` now: the time, its live view and the row after, or why not."""
    now = time.time_ns()
    view = live_view(record, now)
    refused = refusal(view, voucher, price)
    if refused is not None:
        return refused
    after = charged_after(view, voucher, price=price, actual=actual, now_ns=now, hold_ns=hold_ns)
    return now, view, after


def swap_steps(
    db: ChannelDatabase,
    record: ChannelRecord,
    voucher: SignedVoucher,
    price: int,
    actual: int,
    hold_ns: int | None = None,
    *,
    written: bool = False,
) -> Generator[Swap, bool, _Outcome | Contended]:
    """Decide on ``record`` as read, then write only if the row still says the same.

    Yields each compare-and-swap for its driver to run (a thread's write
    or the loop's) and is sent whether it wrote. The UPDATE's WHERE names
    every column the decision read, so a row that another request or
    process changed meanwhile is not written; it is read again and
    decided again. ``written`` says ``record`` is this process's last
    write of the row (:class:`~.swap.WrittenRows`), not a read: a charge may
    be decided on it, a refusal only on the row read back.
    """
    for _ in range(_SWAP_ATTEMPTS):
        decided = _decide(record, voucher, price, actual, hold_ns)
        if not isinstance(decided, ChargeRefused):
            now, view, after = decided
            if (yield _swap(db, record, after, now)):
                return _accepted(view, after, price, actual, now, hold_ns)
        elif not written:
            return decided
        written = False
        fresh = db._fetch(voucher.channel_id, record.config)
        if fresh is None:
            return NO_DEPOSIT
        record = fresh
        if not _hot(db, record):
            break
    # Contended past reason, or the mirror went stale meanwhile: take the lock.
    return Contended(record)


def charge_steps(
    db: ChannelDatabase, request: ChargeRequest, rows: WrittenRows | None = None
) -> Generator[Swap, bool, _Outcome | Contended]:
    """The charge up to the lock: checks, then compare-and-swap on a fresh known row.

    With ``rows`` (the loop's), a channel this process wrote last is decided
    on as written rather than read back first.
    """
    refused = _admit(db, request)
    if refused is not None:
        return refused
    hold_ns = _hold_ns(request.hold_s)
    channel_id = request.voucher.channel_id
    known = rows.get(channel_id) if rows is not None else None
    written = _hot(db, known)
    if not written:
        known = db._fetch(channel_id, request.config)
        if not _hot(db, known):
            return Contended(known)
    assert known is not None  # _hot says so
    voucher, price, actual = request.voucher, request.price, request.actual
    return (yield from swap_steps(db, known, voucher, price, actual, hold_ns, written=written))


def charge_locked(
    db: ChannelDatabase, known: ChannelRecord | None, request: ChargeRequest
) -> _Outcome:
    """The charge under the row's lock, reading the chain first when the mirror is stale."""
    voucher, price, actual = request.voucher, request.price, request.actual
    hold_ns = _hold_ns(request.hold_s)
    # Chain reads happen here, before the lock, never under it.
    snapshot = None
    if db.escrow is not None:
        stale = known is None or time.time_ns() - known.onchain_synced_at_ns > db.state_ttl_ns
        if stale:
            read = read_chain(db, voucher.channel_id)
            if isinstance(read, ChargeRefused):
                return replace(read, record=known)
            snapshot = read

    with db._begin() as connection:
        if snapshot is not None:
            insert_row(db, connection, request.config, snapshot)
        record = db._locked(connection, voucher.channel_id)
        if record is None:
            return NO_DEPOSIT
        if snapshot is not None:
            apply_mirror(db, connection, record, snapshot)
            record = db._locked(connection, voucher.channel_id)
            assert record is not None
        decided = _decide(record, voucher, price, actual, hold_ns)
        if isinstance(decided, ChargeRefused):
            return decided
        now, view, planned = decided
        signed = planned.signature
        signature = None if signed is None else "0x" + signed.hex()
        connection.execute(
            update(CHANNELS)
            .where(CHANNELS.c.channel_id == db._key(voucher.channel_id))
            .values(
                charged=str(planned.charged),
                signed_max=str(planned.signed_max),
                signature=signature,
                held=str(planned.held),
                held_until_ns=planned.held_until_ns,
                hold_epoch=planned.hold_epoch,
                last_request_at_ns=now,
                updated_at_ns=now,
            )
        )
        after = db._locked(connection, voucher.channel_id)
    db._rows.drop(voucher.channel_id)
    assert after is not None
    return _accepted(view, after, price, actual, now, hold_ns)


def charge_now(db: ChannelDatabase, request: ChargeRequest) -> _Outcome:
    """The charge in this thread: compare-and-swap, then the lock if it must."""
    outcome = drive(charge_steps(db, request), db._write)
    if isinstance(outcome, Contended):
        return charge_locked(db, outcome.record, request)
    return outcome


async def charge_on_loop(db: ChannelDatabase, request: ChargeRequest) -> _Outcome:
    """The charge from the event loop (see ``ChannelStore.charge_async``)."""
    committer = db._committer
    if committer is None:
        outcome: _Outcome = await anyio.to_thread.run_sync(lambda: charge_now(db, request))
        return outcome
    rows = db._rows
    swapped = await drive_async(charge_steps(db, request, rows), committer.execute_async, rows)
    if not isinstance(swapped, Contended):
        return swapped
    known = swapped.record
    locked: _Outcome = await anyio.to_thread.run_sync(lambda: charge_locked(db, known, request))
    return locked


def hold_steps(
    db: ChannelDatabase,
    hold: Hold,
    charge: int,
    keep: int,
    known: ChannelRecord | None,
    until_ns: int = 0,
) -> Generator[Swap, bool, ChannelRecord | None]:
    """Move ``charge`` of ``hold`` into ``charged`` and keep ``keep`` held, by compare-and-swap.

    ``until_ns`` renews the row's lease to at least then."""
    for amount in (charge, keep):
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise PaywallConfigError("a hold moves non-negative ints of atomic units")
    if charge + keep > hold.amount:
        raise PaywallConfigError("a hold cannot charge or keep more than it holds")
    read = known is None
    record = db._fetch(hold.channel_id) if read else known
    while record is not None:
        after = held_after(record, hold, charge=charge, keep=keep, until_ns=until_ns)
        if after is not None:
            now = time.time_ns()
            params = hold_params(db._key(hold.channel_id), record, after, hold.epoch, now)
            if (yield Swap(db._sql_hold, params, after)):
                return after
        elif read:
            return None  # the hold is gone from the row as read
        record, read = db._fetch(hold.channel_id), True  # changed meanwhile: decide again
    return None
