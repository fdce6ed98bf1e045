"""The paid path: verify, claim, run the handler buffered, settle, deliver once.

:class:`ExactPaidPath` is the exact scheme's server part (steps 3 to 7 of
``farthing.paywall.edge.middleware``'s order of events): the authorization's
nonce is claimed in the payment database before the handler runs, so a copy
of the payment never reaches it; the buffered answer is sent only once the
settlement succeeded; an unknown outcome is pending and resolved from the
chain, and the payer's retry with the same header takes over a payment
nobody is finishing. A batch-settlement payment goes to
``farthing.paywall.edge.channel`` instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Final

import anyio
import anyio.to_thread

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
from farthing.paywall.edge.challenge import Challenger, Priced
from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.facilitator.local import Facilitator, LocalFacilitator, ResolvingFacilitator
from farthing.paywall.records.books import RevenueBook, SettledPayment
from farthing.paywall.records.payments import PaymentKey, PaymentRecord, PaymentState
from farthing.paywall.records.store import PaymentStore
from farthing.paywall.schemes.signatures import SignatureCheck, check_signature
from farthing.paywall.wire import PAYMENT_RESPONSE_HEADER, PaymentPayload, SettleResult
from farthing.wallet.eip712 import authorization_digest, verify_authorization_signature

__all__ = ["ExactPaidPath"]

_INT63_MAX: Final = 2**63 - 1
_FINAL_REFUSALS: Final = (PaymentState.FAILED, PaymentState.EXPIRED)
# How much of a claim's lease the handler may use before the settlement
# renews it (a write); past it, the settlement would start short of 90%.
_LEASE_USED_MAX: Final = 0.1
_RETRY_SAME_HEADER: Final = (
    "The payment was sent to the chain but its outcome is not known yet. Retry with the "
    "same payment header: it will not be charged twice. Do not sign a new payment."
)

log = logging.getLogger("farthing.paywall")


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One paid request in flight: the ASGI call and the exact payment it carries."""

    scope: dict[str, Any]
    receive: Any
    send: Send
    priced: Priced
    payload: PaymentPayload


class ExactPaidPath:
    """The exact scheme's paid path for one :class:`PaywallMiddleware`."""

    def __init__(
        self,
        app: Any,
        *,
        challenger: Challenger,
        facilitator: Facilitator,
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
        payload: PaymentPayload,
    ) -> None:
        """Answer a request that carries an exact payment for ``priced``."""
        exchange = _Exchange(scope, receive, send, priced, payload)
        requirements = priced.requirements
        auth = payload.authorization
        key = PaymentKey(
            requirements.network, requirements.asset, auth.from_address, "0x" + auth.nonce.hex()
        )
        known = await in_thread(self.store.get, key)
        if known is not None and _unowned(known):
            # Pending, or its owner's lease ran out (it died, or stalled):
            # finish it from the chain instead of refusing the payer.
            await self._resume_pending(exchange, key)
            return
        if known is not None and _in_progress(known):
            await self._send_in_progress(send, known)
            return
        if known is not None and known.state != PaymentState.RELEASED:
            # A refused settlement keeps its reason; anything else was used.
            reason = (
                known.reason
                if known.state in _FINAL_REFUSALS and known.reason
                else "nonce_already_used"
            )
            await self._send_402(exchange, reason, "This payment cannot be used again.")
            return
        verified = await self.facilitator.verify(payload, requirements)
        if not verified.valid:
            reason = verified.reason or "invalid_payment"
            await self._send_402(
                exchange, reason, f"The payment was refused: {verified.message or reason}."
            )
            return
        crash_point("paywall.after_verify")
        leased_s = time.monotonic()
        claim = await in_thread(
            self.store.claim,
            self._record(key, priced, payload),
            lease_s=self.claim_lease_s,
        )
        if not claim.won:
            await self._send_lost(exchange, claim.existing, "This payment was already used.")
            return
        crash_point("paywall.after_claim")
        await self._serve_and_settle(exchange, key, claim.owner, leased_s)

    async def _send_402(self, exchange: _Exchange, reason: str, detail: str) -> None:
        await self.challenger.send_402(exchange.send, exchange.priced, reason, detail)

    async def _send_lost(
        self, exchange: _Exchange, existing: PaymentRecord | None, detail: str
    ) -> None:
        """A claim lost to another request: 503 while it is live, else the nonce is used."""
        if existing is not None and _in_progress(existing):
            await self._send_in_progress(exchange.send, existing)
            return
        await self._send_402(exchange, "nonce_already_used", detail)

    async def _send_in_progress(self, send: Send, record: PaymentRecord) -> None:
        """503 for a copy of a payment another live request is settling right now.

        Not a 402: the payment is neither refused nor spent on something else,
        and a payer told ``nonce_already_used`` might book it as paid without
        the content. Retrying the same header after the lease gets the content
        (or, once delivered elsewhere, a 402).
        """
        left_ns = (record.lease_until_ns or 0) - time.time_ns()
        wait_s = max(1, min(int(self.claim_lease_s), -(-left_ns // 1_000_000_000)))
        await send_json(
            send,
            503,
            {
                "error": "payment_in_progress",
                "message": "Another request is settling this payment. Retry with the same "
                f"payment header in {wait_s} s; do not sign a new payment.",
            },
            [(b"retry-after", str(wait_s).encode())],
        )

    async def _resume_pending(self, exchange: _Exchange, key: PaymentKey) -> None:
        """A retry of a payment nobody is finishing: take it over, read the chain first.

        The row is pending (the outcome was unknown), claimed by an owner whose
        lease ran out (it died mid-way), or settled but never delivered.
        """
        priced, payload = exchange.priced, exchange.payload
        known = await in_thread(self.store.get, key)
        if known is None:
            await self._send_402(exchange, "nonce_already_used", "This payment is unknown.")
            return
        # The key (payer, nonce) is public on-chain: only the payer's own
        # signed authorization for these terms may collect what it paid for.
        if not await self._payers_signature(payload, priced):
            await self._send_402(exchange, "invalid_signature", "The signature does not verify.")
            return
        auth = payload.authorization
        if auth.value != known.amount or auth.to.lower() != known.pay_to.lower():
            await self._send_402(
                exchange, "nonce_already_used", "This nonce paid for something else."
            )
            return
        leased_s = time.monotonic()
        claim = await in_thread(self.store.take_over, key, lease_s=self.claim_lease_s)
        if not claim.won or claim.existing is None:
            await self._send_lost(
                exchange, claim.existing, "This payment is already being settled."
            )
            return
        record = claim.existing
        owner = claim.owner
        terms = replace(priced.requirements, amount=record.amount, pay_to=record.pay_to)
        if record.state == PaymentState.SETTLED:
            settled = SettleResult(
                True,
                key.network,
                record.tx_hash or "",
                payload.payer,
                record.amount,
                block_number=record.block_number,
            )
            await self._deliver(exchange, record, owner, settled)
            return
        if isinstance(self.facilitator, ResolvingFacilitator):
            try:
                resolved = await self.facilitator.resolve(
                    terms, payload.payer, auth.nonce, record.tx_hash
                )
            except FacilitatorUnavailableError:
                await in_thread(
                    self.store.mark_pending,
                    key,
                    owner,
                    reason="settlement_unknown",
                    tx_hash=record.tx_hash,
                )
                raise
            if resolved is not None:
                await self._settled(exchange, record, owner, resolved)
                return
            if time.time() > record.valid_before:
                # Unused and past validBefore: it can never move money any more.
                await in_thread(self.store.mark_expired, key, owner)
                await self._send_402(
                    exchange, "authorization_expired", "The payment expired unused."
                )
                return
        # The nonce is unused on-chain (or the facilitator resolves on its own):
        # serve and settle; the facilitator re-reads the nonce before resubmitting.
        await self._serve_and_settle(exchange, key, owner, leased_s)

    async def _payers_signature(self, payload: PaymentPayload, priced: Priced) -> bool:
        """Whether the payer signed ``payload``: its key, or its contract wallet when the chain is ours."""
        signed = payload.signed(priced.requirements.domain())
        if verify_authorization_signature(signed, payload.payer).valid:
            return True
        if not isinstance(self.facilitator, LocalFacilitator):
            return False  # a remote facilitator's chain is not ours to ask; the sweep resolves it
        digest = authorization_digest(payload.authorization, priced.requirements.domain())
        check: SignatureCheck = await in_thread(
            check_signature, self.facilitator.chain, payload.payer, digest, payload.signature
        )
        return check.valid

    async def _serve_and_settle(
        self, exchange: _Exchange, key: PaymentKey, owner: str, leased_s: float
    ) -> None:
        """Run the handler under the claim ``owner`` leased at ``leased_s`` (monotonic), then settle."""
        send, priced, payload = exchange.send, exchange.priced, exchange.payload
        try:
            buffered = await run_buffered(
                self.app, exchange.scope, exchange.receive, body_bytes_max=self.body_bytes_max
            )
        except BodyTooLarge:
            await in_thread(self.store.release, key, owner)
            await send_json(send, 500, {"error": "response_too_large"})
            return
        except BaseException:
            # The handler failed: give the claim back unsettled, then let the
            # server report the error as it would without a paywall.
            with anyio.CancelScope(shield=True):
                await in_thread(self.store.release, key, owner)
            raise
        if not 200 <= buffered.status < 300:
            await in_thread(self.store.release, key, owner)
            await send_buffered(send, buffered, [])
            return
        crash_point("paywall.after_handler")
        # The settlement starts with at least nine tenths of a lease: a live
        # owner is never taken over while its transaction waits for a
        # receipt. A quick handler leaves that much of the claim's own lease
        # (no write); a slow one gets a fresh lease.
        renewed = (
            time.monotonic() - leased_s <= self.claim_lease_s * _LEASE_USED_MAX
            or await in_thread(self.store.renew, key, owner, lease_s=self.claim_lease_s)
        )
        if not renewed:
            # Our lease ran out during the handler and someone took the payment
            # over: it is theirs to settle now; we send nothing.
            await send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
            return
        try:
            settled = await self.facilitator.settle(payload, priced.requirements)
        except FacilitatorUnavailableError:
            # It may or may not have been sent: pending, resolved from the chain.
            await in_thread(
                self.store.mark_pending, key, owner, reason="settlement_unknown", tx_hash=None
            )
            raise
        crash_point("paywall.after_receipt")
        record = self._record(key, priced, payload)
        if not settled.success and not settled.pending:
            # Refused or reverted: perhaps because an earlier owner's transaction,
            # still in flight when we resubmitted, used the nonce first (even in
            # the same block). The chain decides: if it paid us, this is settled.
            resolved = None
            if isinstance(self.facilitator, ResolvingFacilitator):
                try:
                    resolved = await self.facilitator.resolve(
                        priced.requirements, payload.payer, payload.authorization.nonce, None
                    )
                except FacilitatorUnavailableError:
                    resolved = None
            if resolved is not None:
                settled = resolved
            elif settled.reason == "nonce_already_used":
                # Used, by whom is not known here (a remote facilitator, or an
                # unmined transaction): pending, for the sweep to read the chain.
                settled = _unknown(settled)
        await self._settled(exchange, record, owner, settled, buffered)

    async def _settled(
        self,
        exchange: _Exchange,
        record: PaymentRecord,
        owner: str,
        settled: SettleResult,
        buffered: Buffered | None = None,
    ) -> None:
        """Record a settlement's outcome (ours only while we own the row), then answer."""
        key, send = record.key, exchange.send
        if settled.success:
            marked = await in_thread(
                self.store.mark_settled,
                key,
                owner,
                tx_hash=settled.transaction,
                block_number=settled.block_number,
            )
            if not marked:
                # Taken over meanwhile: the new owner resolves the same
                # settlement from the chain and delivers it once.
                await send_unavailable(send, "settlement_pending", _RETRY_SAME_HEADER)
                return
            crash_point("paywall.after_mark")
            await self._deliver(exchange, record, owner, settled, buffered)
            return
        if settled.pending:
            await in_thread(
                self.store.mark_pending,
                key,
                owner,
                reason=settled.reason or "settlement_pending",
                tx_hash=settled.transaction or None,
            )
            await send_unavailable(
                send, "settlement_pending", _RETRY_SAME_HEADER, _payment_response(settled)
            )
            return
        await in_thread(
            self.store.mark_failed, key, owner, reason=settled.reason or "settlement_failed"
        )
        await self.challenger.send_402(
            send,
            exchange.priced,
            settled.reason or "settlement_failed",
            f"The payment could not be settled: {settled.message or settled.reason}.",
            settlement=settled,
        )

    async def _deliver(
        self,
        exchange: _Exchange,
        record: PaymentRecord,
        owner: str,
        settled: SettleResult,
        buffered: Buffered | None = None,
    ) -> None:
        """Book a settled payment (idempotently), then send its content once."""
        send = exchange.send
        if not record.booked:
            await self._book(exchange.priced, exchange.payload, record.key, settled, record)
        crash_point("paywall.after_book")
        if buffered is None:
            try:
                buffered = await run_buffered(
                    self.app, exchange.scope, exchange.receive, body_bytes_max=self.body_bytes_max
                )
            except BaseException:
                # Paid but not served: the payer's next retry gets it.
                with anyio.CancelScope(shield=True):
                    await in_thread(self.store.give_back, record.key, owner)
                raise
        if not 200 <= buffered.status < 300:
            await in_thread(self.store.give_back, record.key, owner)
            await send_buffered(send, buffered, [])
            return
        await send_buffered(send, buffered, _payment_response(settled))
        await in_thread(self.store.mark_delivered, record.key, owner)

    def _record(self, key: PaymentKey, priced: Priced, payload: PaymentPayload) -> PaymentRecord:
        auth = payload.authorization
        return PaymentRecord(
            key=key,
            state=PaymentState.CLAIMED,
            owner="",
            pay_to=priced.requirements.pay_to,
            amount=priced.requirements.amount,
            route=priced.route.route.path,
            resource=priced.resource.url,
            valid_after=min(auth.valid_after, _INT63_MAX),
            valid_before=min(auth.valid_before, _INT63_MAX),
            fiat_currency=priced.quote.fiat_currency,
            fiat_rate=priced.quote.fiat_rate,
        )

    async def _book(
        self,
        priced: Priced,
        payload: PaymentPayload,
        key: PaymentKey,
        settled: SettleResult,
        record: PaymentRecord | None = None,
    ) -> None:
        if self.books is None:
            return
        books = self.books
        auth = payload.authorization
        asset = priced.quote.asset
        # The terms the payment was claimed at, should the route's price have changed since.
        terms = record or self._record(key, priced, payload)
        payment = SettledPayment(
            network=key.network,
            token=key.token,
            decimals=asset.decimals,
            symbol=asset.symbol,
            payer=key.payer,
            pay_to=terms.pay_to,
            nonce=key.nonce,
            amount=terms.amount,
            tx_hash=settled.transaction,
            block_number=settled.block_number,
            route=priced.route.route.path,
            resource=priced.resource.url,
            valid_after=auth.valid_after,
            valid_before=auth.valid_before,
            fiat_currency=priced.quote.fiat_currency,
            fiat_rate=priced.quote.fiat_rate,
        )
        try:
            result = await anyio.to_thread.run_sync(books.record_settlement, payment)
            if result.booked:
                await in_thread(self.store.mark_booked, key)
            else:
                log.warning("revenue for %s not booked: %s", settled.transaction, result.reason)
        except Exception as exc:  # noqa: BLE001 - the payer paid: deliver; the sweep books it later
            log.warning("revenue for %s not booked yet: %s", settled.transaction, exc)


def _unowned(record: PaymentRecord) -> bool:
    """Nobody is finishing this payment: pending, or its owner's lease ran out undelivered."""
    if record.state == PaymentState.PENDING:
        return True
    if record.state not in (PaymentState.CLAIMED, PaymentState.SETTLED) or record.delivered:
        return False
    return record.lease_until_ns is None or record.lease_until_ns < time.time_ns()


def _in_progress(record: PaymentRecord) -> bool:
    """A live owner is settling or delivering this payment now."""
    if record.state not in (PaymentState.CLAIMED, PaymentState.SETTLED) or record.delivered:
        return False
    return not _unowned(record)


def _unknown(refused: SettleResult) -> SettleResult:
    """A settle refused as ``nonce_already_used`` while the chain shows the nonce unused:
    someone's transaction is in flight, so the outcome is pending, not failed."""
    return replace(refused, success=False, reason="settlement_pending", pending=True)


def _payment_response(settled: SettleResult) -> list[tuple[bytes, bytes]]:
    """The ``PAYMENT-RESPONSE`` header of a settlement (paid, or pending with its transaction)."""
    return [(PAYMENT_RESPONSE_HEADER.encode(), settled.header().encode())]
