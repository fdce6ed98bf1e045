"""The ``upto`` paid path: verify the signed ceiling, run the handler, settle what it used.

A route whose ``schemes`` include ``"upto"`` offers its price as a ceiling
(``accepts`` entry ``scheme: "upto"``, ``extra.facilitatorAddress`` naming
who may settle). :class:`UptoPaidPath` answers a request that carries such a
payment:

1. the payment must be for this request's own offer (network, token, payee,
   ceiling, facilitator), else 402;
2. verify (the facilitator) against the ceiling; a payer who has not approved
   Permit2 (and sent no gas-sponsoring extension) gets **412**
   ``PERMIT2_ALLOWANCE_REQUIRED`` with the challenge, as the spec says; any
   other refusal a 402;
3. claim the permit's nonce in the payment database (a copy of the payment
   never reaches the handler; one in flight gets 503 ``payment_in_progress``);
4. run the handler **buffered**; a non-2xx answer or an exception is charged
   nothing and releases the claim;
5. the route's usage function reads the answer and names the charge
   (:func:`charge_of`: by default the handler's ``Farthing-Charge`` header,
   else the whole ceiling), capped at the ceiling;
6. settle that amount (settle-time verification against the signed ceiling);
   0 sends no transaction. Only on success is the buffered answer sent, with
   ``PAYMENT-RESPONSE`` (``amount`` the charge); a refusal is a 402, an
   unknown outcome a 503 ``settlement_pending``;
7. record the charge on the payment's row (``mark_settled(amount=)``: the
   row's ``amount`` is the ceiling) and book the revenue for it.

A payment whose row nobody is finishing (pending after a receipt timeout, or
its owner's lease run out) is not refused: the payer's retry goes to
``farthing.paywall.edge.resume``, which decides it from the chain first. A
settle refused or reverted is checked against the chain too (an earlier
owner's settlement of the same permit may have spent it first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import anyio

from farthing.faults import crash_point
from farthing.paywall.edge.asgi import (
    BodyTooLarge,
    Buffered,
    Send,
    in_thread,
    run_buffered,
    send_buffered,
    send_json,
    send_unavailable,
)
from farthing.paywall.edge.ceiling import serve_metered
from farthing.paywall.edge.challenge import Challenger, Priced
from farthing.paywall.edge.metered import meter_asked
from farthing.paywall.edge.resume import resume_upto, settled_elsewhere
from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.records.books import RevenueBook, SettledPayment
from farthing.paywall.records.payments import PaymentKey, PaymentRecord, PaymentState
from farthing.paywall.records.store import PaymentStore
from farthing.paywall.schemes.upto.facilitator import UptoSettling
from farthing.paywall.schemes.upto.types import (
    ERR_ALLOWANCE_REQUIRED,
    PERMIT2_ALLOWANCE_REQUIRED,
)
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.paywall.wire import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, SettleResult

__all__ = ["UptoPaidPath", "UsageFunction", "charge_of"]

# What a route's usage function sees: the handler's buffered answer
# (status, headers, body, and its Farthing-Charge header, stripped).
UsageFunction = Callable[[Buffered], int]

_INT63_MAX: Final = 2**63 - 1
_RETRY_SAME_HEADER: Final = (
    "The payment was sent to the chain but its outcome is not known yet. Retry with the "
    "same payment header: it will not be charged twice. Do not sign a new payment."
)

log = logging.getLogger("farthing.paywall")


def charge_of(buffered: Buffered, ceiling: int, usage: UsageFunction | None) -> int:
    """What the answer costs: the usage function's figure, else ``Farthing-Charge``, else the ceiling.

    A non-2xx answer costs nothing. A figure that is not a whole number of
    atomic units, or is negative, charges the ceiling (the handler's mistake
    is the seller's, never a free answer); above the ceiling it is capped.
    """
    if not 200 <= buffered.status < 300:
        return 0
    if usage is not None:
        named = usage(buffered)
        if isinstance(named, bool) or not isinstance(named, int):
            raise TypeError("a usage function must return an int of atomic units")
    elif buffered.charge is None:
        return ceiling
    else:
        text = buffered.charge.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 78:
            log.warning("ignored a malformed Farthing-Charge header; charging the ceiling")
            return ceiling
        named = int(text)
    if named < 0:
        log.warning("a usage of %d is negative; charging the ceiling", named)
        return ceiling
    return min(named, ceiling)


class UptoPaidPath:
    """The ``upto`` scheme's paid path for one :class:`PaywallMiddleware`."""

    def __init__(
        self,
        app: Any,
        *,
        challenger: Challenger,
        facilitator: UptoSettling,
        store: PaymentStore,
        books: RevenueBook | None,
        claim_lease_s: float,
        body_bytes_max: int,
    ) -> None:
        self.app = app
        self.challenger = challenger
        self.facilitator = facilitator
        self.store = store
        self.books = books
        self.claim_lease_s = claim_lease_s
        self.body_bytes_max = body_bytes_max

    async def serve(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: Priced,
        payment: UptoPayment,
        usage: UsageFunction | None = None,
    ) -> None:
        """Answer a request that carries an ``upto`` payment for ``priced``."""
        offer = priced.upto
        if offer is None:
            await self.challenger.send_402(send, priced, "unsupported_scheme", "No upto offer.")
            return
        if _terms(payment.accepted) != _terms(offer):
            await self.challenger.send_402(
                send, priced, "offer_mismatch", "The payment is for other terms than offered."
            )
            return
        auth = payment.authorization
        key = PaymentKey(offer.network, offer.asset, auth.from_address, f"0x{auth.nonce:064x}")
        known = await in_thread(self.store.get, key)
        if known is not None and _unowned(known):
            # Pending (a receipt timeout), or its owner's lease ran out (it died):
            # finish it from the chain instead of refusing the payer (edge/resume.py).
            await resume_upto(self, scope, receive, send, priced, payment, known, usage)
            return
        verified = await self.facilitator.verify_upto(payment, offer)
        if not verified.valid:
            reason = verified.reason or "invalid_payment"
            if reason == ERR_ALLOWANCE_REQUIRED:
                await self._send_412(send, priced)
                return
            detail = f"The payment was refused: {verified.message or reason}."
            await self.challenger.send_402(send, priced, reason, detail)
            return
        claim = await in_thread(
            self.store.claim, self._record(key, priced, payment), lease_s=self.claim_lease_s
        )
        if not claim.won:
            await self._send_lost(send, priced, claim.existing)
            return
        await self._serve_claimed(scope, receive, send, priced, payment, key, claim.owner, usage)

    async def _serve_claimed(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Send,
        priced: Priced,
        payment: UptoPayment,
        key: PaymentKey,
        owner: str,
        usage: UsageFunction | None,
    ) -> None:
        """Run the handler under the claim ``owner`` holds, then settle its charge once."""
        offer = priced.upto
        assert offer is not None  # serve() answered 402 before claiming otherwise
        if meter_asked(scope):  # a streamed answer: settled once when it ends (edge/ceiling.py)
            await serve_metered(
                self, scope, receive, send, priced=priced, payment=payment, key=key, owner=owner
            )
            return
        try:
            buffered = await run_buffered(
                self.app, scope, receive, body_bytes_max=self.body_bytes_max
            )
        except BodyTooLarge:
            await in_thread(self.store.release, key, owner)
            await send_json(send, 500, {"error": "response_too_large"})
            return
        except BaseException:
            with anyio.CancelScope(shield=True):
                await in_thread(self.store.release, key, owner)
            raise
        if not 200 <= buffered.status < 300:
            await in_thread(self.store.release, key, owner)
            await send_buffered(send, buffered, [])
            return
        charge = charge_of(buffered, offer.amount, usage)
        await in_thread(self.store.renew, key, owner, lease_s=self.claim_lease_s)
        try:
            settled = await self.facilitator.settle_upto(payment, offer.charging(charge))
        except FacilitatorUnavailableError:
            await in_thread(
                self.store.mark_pending, key, owner, reason="settlement_unknown", tx_hash=None
            )
            raise
        crash_point("paywall.upto.after_receipt")
        if not settled.success and not settled.pending:
            # Refused or reverted: perhaps because an earlier owner's settlement of this
            # permit, still in flight when we sent ours, spent it first. The chain decides.
            settled = await settled_elsewhere(self, key, settled)
            if settled.success and settled.amount is not None:
                charge = settled.amount  # what that settlement moved, read from the chain
        if settled.pending:
            await in_thread(
                self.store.mark_pending, key, owner,
                reason=settled.reason or "settlement_pending", tx_hash=settled.transaction or None,
            )  # fmt: skip
            await send_unavailable(
                send, "settlement_pending", _RETRY_SAME_HEADER, _payment_response(settled)
            )
            return
        if not settled.success:
            reason = settled.reason or "settlement_failed"
            await in_thread(self.store.mark_failed, key, owner, reason=reason)
            await self.challenger.send_402(
                send, priced, reason,
                f"The payment could not be settled: {settled.message or reason}.",
                settlement=settled,
            )  # fmt: skip
            return
        marked = await in_thread(
            self.store.mark_settled, key, owner,
            tx_hash=settled.transaction, block_number=settled.block_number, amount=charge,
        )  # fmt: skip
        if not marked:
            # Taken over meanwhile: the new owner resolves it from the chain, delivers it once.
            await send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
            return
        crash_point("paywall.upto.after_mark")
        await self._book(priced, payment, key, settled, charge)
        await send_buffered(send, buffered, _payment_response(settled))
        await in_thread(self.store.mark_delivered, key, owner)

    async def _send_412(self, send: Send, priced: Priced) -> None:
        """The spec's 412: approve Permit2 once (or send a gas-sponsoring extension), then retry."""
        body = {
            "x402Version": 2,
            "error": PERMIT2_ALLOWANCE_REQUIRED,
            "invalidReason": ERR_ALLOWANCE_REQUIRED,
            "message": "Approve Permit2 for this token once (or sign an EIP-2612 permit or an "
            "approve() transaction the facilitator sponsors), then retry the payment.",
        }
        header = self.challenger.challenge_header(priced, ERR_ALLOWANCE_REQUIRED)
        await send_json(send, 412, body, [(PAYMENT_REQUIRED_HEADER.encode(), header.encode())])

    async def _send_lost(self, send: Send, priced: Priced, existing: PaymentRecord | None) -> None:
        """A claim lost to another request: 503 while it is live, else the permit is spent."""
        live = (
            existing is not None
            and existing.state in (PaymentState.CLAIMED, PaymentState.SETTLED)
            and not existing.delivered
            and (existing.lease_until_ns or 0) > time.time_ns()
        )
        if live:
            await send_json(
                send,
                503,
                {
                    "error": "payment_in_progress",
                    "message": "Another request is settling this payment. Retry with the same "
                    "payment header later; do not sign a new payment.",
                },
                [(b"retry-after", b"1")],
            )
            return
        await self.challenger.send_402(
            send, priced, "nonce_already_used", "This payment was already used."
        )

    def _record(self, key: PaymentKey, priced: Priced, payment: UptoPayment) -> PaymentRecord:
        auth = payment.authorization
        return PaymentRecord(
            key=key,
            state=PaymentState.CLAIMED,
            owner="",
            pay_to=auth.to,
            amount=auth.amount,  # the ceiling; mark_settled records the charge
            route=priced.route.route.path,
            resource=priced.resource.url,
            valid_after=min(auth.valid_after, _INT63_MAX),
            valid_before=min(auth.deadline, _INT63_MAX),
            fiat_currency=priced.quote.fiat_currency,
            fiat_rate=priced.quote.fiat_rate,
            scheme="upto",
        )

    async def _book(
        self,
        priced: Priced,
        payment: UptoPayment,
        key: PaymentKey,
        settled: SettleResult,
        charge: int,
    ) -> None:
        """The seller's revenue for the charge (never the ceiling); a failure is logged.

        A charge of 0 has nothing to book: its row is marked booked at once
        (the sweep, which books a settled row's recorded charge, would skip it
        too).
        """
        if charge == 0:
            await in_thread(self.store.mark_booked, key)
            return
        if self.books is None:
            return
        auth, asset = payment.authorization, priced.quote.asset
        entry = SettledPayment(
            network=key.network,
            token=key.token,
            decimals=asset.decimals,
            symbol=asset.symbol,
            payer=key.payer,
            pay_to=auth.to,
            nonce=key.nonce,
            amount=charge,
            tx_hash=settled.transaction,
            block_number=settled.block_number,
            route=priced.route.route.path,
            resource=priced.resource.url,
            valid_after=auth.valid_after,
            valid_before=min(auth.deadline, _INT63_MAX),
            fiat_currency=priced.quote.fiat_currency,
            fiat_rate=priced.quote.fiat_rate,
        )
        try:
            result = await anyio.to_thread.run_sync(self.books.record_settlement, entry)
            if result.booked:
                await in_thread(self.store.mark_booked, key)
            else:
                log.warning("revenue for %s not booked: %s", settled.transaction, result.reason)
        except Exception as exc:  # noqa: BLE001 - the payer paid: deliver; logged for the books
            log.warning("revenue for %s not booked yet: %s", settled.transaction, exc)


def _unowned(record: PaymentRecord) -> bool:
    """Nobody is finishing this payment: pending, or its owner's lease ran out undelivered.

    A pending row whose stream already went out is never resumed: the sweep resolves it.
    """
    if record.state == PaymentState.PENDING:
        return not record.delivered
    if record.state not in (PaymentState.CLAIMED, PaymentState.SETTLED) or record.delivered:
        return False
    return record.lease_until_ns is None or record.lease_until_ns < time.time_ns()


def _terms(requirements: UptoRequirements) -> tuple[Any, ...]:
    return (
        requirements.network,
        requirements.asset,
        requirements.pay_to,
        requirements.amount,
        requirements.facilitator_address,
    )


def _payment_response(settled: SettleResult) -> list[tuple[bytes, bytes]]:
    return [(PAYMENT_RESPONSE_HEADER.encode(), settled.header().encode())]
