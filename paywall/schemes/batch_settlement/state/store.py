"""``ChannelStore``: the channel operations the paywall, the claimer and the books call.

Each public method here says what it promises; its body lives with its
concern: the chain mirror and recovery in
:mod:`~farthing.paywall.schemes.batch_settlement.state.mirror`, the voucher
checks in :mod:`~farthing.paywall.schemes.batch_settlement.state.checks`, the
paid path and holds in :mod:`~farthing.paywall.schemes.batch_settlement.state.charge`,
the rows and their connections in
:mod:`~farthing.paywall.schemes.batch_settlement.state.database`.
"""

from __future__ import annotations

import anyio.to_thread

from farthing.paywall.schemes.batch_settlement.contract import ChannelSnapshot
from farthing.paywall.schemes.batch_settlement.holds import Hold
from farthing.paywall.schemes.batch_settlement.state.charge import (
    ChargeRequest,
    called_with,
    charge_now,
    charge_on_loop,
    hold_steps,
)
from farthing.paywall.schemes.batch_settlement.state.checks import check_refund, check_voucher
from farthing.paywall.schemes.batch_settlement.state.database import ChannelDatabase
from farthing.paywall.schemes.batch_settlement.state.mirror import mirror_snapshot, recover_channels
from farthing.paywall.schemes.batch_settlement.state.record import (
    ChannelRecord,
    ChannelTerms,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.state.swap import drive, drive_async
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, SignedVoucher

__all__ = ["ChannelStore"]


class ChannelStore(ChannelDatabase):
    """Channel rows in SQLite (a file shared by processes) or PostgreSQL.

    ``domain`` fixes the chain and escrow the channel ids belong to. With an
    ``escrow``, unknown channels and mirrors older than ``state_ttl_s`` are read
    from the chain before a charge; without one, the caller keeps the mirror
    current through :meth:`mirror`.
    """

    def __repr__(self) -> str:
        return f"ChannelStore({self.display_url!r})"

    # ------------------------------------------------------------ chain mirror

    def mirror(self, config: ChannelConfig, snapshot: ChannelSnapshot) -> ChannelRecord:
        """Record a chain snapshot of a channel (after a deposit, claim, refund or a read)."""
        return mirror_snapshot(self, config, snapshot)

    def recover(self, receiver: str, *, from_block: int = 0) -> list[ChannelRecord]:
        """Rebuild this receiver's channel rows from the chain after the state was lost.

        Configs come from the escrow's ``ChannelCreated`` events, amounts from
        its ``channels``/``pendingWithdrawals``/``refundNonce`` views. Rows that
        exist keep what they know (a voucher not yet claimed); missing rows
        start at ``charged = totalClaimed``. Channels of other receivers, and
        ids that do not hash from their config on this domain, are skipped.
        """
        return recover_channels(self, receiver, from_block)

    # ------------------------------------------------------------ the paid path

    def check_voucher(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        *,
        signature_verified: bool = False,
    ) -> ChargeRefused | None:
        """The checks that need no state: id, terms, and the voucher's signer.

        A plain EOA ``payerAuthorizer`` is recovered here. A zero one means the
        payer may be an ERC-1271 wallet: the caller must have had the
        facilitator verify it (``signature_verified=True``).
        """
        return check_voucher(self, terms, config, voucher, signature_verified=signature_verified)

    @called_with(ChargeRequest)
    def charge(self, request: ChargeRequest) -> ChargeAccepted | ChargeRefused:
        """Check ``voucher`` for one request whose ceiling is ``price`` and record ``actual``.

        Called with :class:`ChargeRequest`'s parameters: ``charge(terms, config,
        voucher, *, price, actual, signature_verified=False, checked=False,
        hold_s=None)``.

        With ``hold_s`` the ceiling is **held** for that long instead (``actual``
        is then ignored): :meth:`update_hold` makes it final or frees it, and
        it lapses if nobody does (see :mod:`farthing.paywall.schemes.batch_settlement.holds`).

        Atomic: either the charge and the voucher are recorded together, or
        nothing is. Any number of threads or processes may call this for one
        channel; each write is a compare-and-swap on the row, so they take turns.

        ``checked=True`` says the caller already ran :meth:`check_voucher` on
        these exact ``terms``, ``config`` and ``voucher`` and it passed (the
        paywall does, before a deposit reaches the chain); it is not run twice.
        """
        return charge_now(self, request)

    @called_with(ChargeRequest)
    async def charge_async(self, request: ChargeRequest) -> ChargeAccepted | ChargeRefused:
        """:meth:`charge` for the event loop, with the same parameters.

        On SQLite the hot path runs on the loop itself: the read and the
        checks are short, and the write joins the writer thread's next batch,
        so a voucher costs no thread hand-off of its own. A charge that must
        read the chain or lock the row, and every charge on PostgreSQL (whose
        reads are round trips), runs in a worker thread.
        """
        return await charge_on_loop(self, request)

    def update_hold(
        self,
        hold: Hold,
        *,
        charge: int = 0,
        keep: int = 0,
        known: ChannelRecord | None = None,
        until_ns: int = 0,
    ) -> ChannelRecord | None:
        """Move ``charge`` of ``hold`` into ``charged``, keep ``keep`` held, free the rest.

        ``charge=hold.amount`` makes it final (the answer was sent),
        ``keep=actual`` shrinks it to what the handler charged, and neither
        frees it (the handler failed). ``known`` is the row as this request
        last saw it: tried first, so a lone request needs no read. Returns
        the row after, or ``None`` when the hold had lapsed and a later
        charge dropped it (nothing is written then). ``until_ns`` renews the
        row's lease to at least then (a streamed answer still being sent).
        """
        return drive(hold_steps(self, hold, charge, keep, known, until_ns), self._write)

    async def update_hold_async(
        self,
        hold: Hold,
        *,
        charge: int = 0,
        keep: int = 0,
        known: ChannelRecord | None = None,
        until_ns: int = 0,
    ) -> ChannelRecord | None:
        """:meth:`update_hold` for the event loop (on SQLite, the write joins the next batch)."""
        if self._committer is None:
            updated: ChannelRecord | None = await anyio.to_thread.run_sync(
                lambda: self.update_hold(
                    hold, charge=charge, keep=keep, known=known, until_ns=until_ns
                )
            )
            return updated
        steps = hold_steps(self, hold, charge, keep, known, until_ns)
        return await drive_async(steps, self._committer.execute_async, self._rows)

    def check_refund(
        self,
        terms: ChannelTerms,
        config: ChannelConfig,
        voucher: SignedVoucher,
        *,
        signature_verified: bool = False,
    ) -> ChannelRecord | ChargeRefused:
        """Check a refund's zero-charge voucher: its ceiling must equal ``charged`` exactly.

        Returns the channel's record (whose ``signed_max``/``signature`` the
        refund's claim row uses) or the refusal; a stale client gets the
        corrective state. Nothing is written: the refund itself happens on chain.
        """
        return check_refund(self, terms, config, voucher, signature_verified=signature_verified)
