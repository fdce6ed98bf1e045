"""The paywall's ``batch-settlement`` path: offer a channel, take vouchers, deposits and refunds.

:class:`ChannelOptions` turns it on (``PaywallOptions.channels``); a route
offers it with ``PaidRoute(schemes=("batch-settlement",))`` or beside exact
(``("exact", "batch-settlement")``, in that order in ``accepts``). The offer's
``extra`` names our receiver authorizer and the withdraw delay. The
middleware hands every payment whose ``accepted.scheme`` is
``batch-settlement`` to :meth:`ChannelPaywall.handle`:

- **voucher**: checked locally (id, terms, a plain EOA signature recovered
  here, no chain call while the mirror is fresh; a zero ``payerAuthorizer``
  goes to the facilitator's ``/verify`` first), then the request's ceiling is
  **held** with ``ChannelStore.charge(hold_s=charge_lease_s)`` (atomic per
  channel, across processes), so a replayed or concurrent copy of the
  voucher never reaches the handler (it gets ``channel_busy``). The handler
  runs buffered; a failure or a non-2xx answer frees the hold. The answer
  carries ``PAYMENT-RESPONSE`` with ``extra.chargedAmount`` and
  ``extra.channelState``; the charge becomes **final once the answer was
  handed to the server** (:meth:`ChannelPaywall.deliver`), and only then is
  it booked. A process that dies in between leaves a hold that lapses: the
  payer's retry of the same voucher is served and charged once
  (:mod:`farthing.paywall.schemes.batch_settlement.holds`). A handler that outlives half the
  lease makes its charge final before anything is sent, or, if the hold was
  dropped meanwhile, sends nothing (``channel_busy``).
- **dynamic price**: a handler charges less than the ceiling with the
  response header ``Farthing-Charge: <atomic units>`` (:data:`CHARGE_HEADER`),
  which the middleware always strips; the hold shrinks to it before the
  answer goes out. A missing or unreadable value charges the ceiling; a
  value above it is capped.
- **lost state**: a voucher for a channel our row does not know (or knows
  without a balance) re-reads that channel from the chain and is tried once
  more. A rebuilt row starts at ``charged = totalClaimed`` (vouchers never
  claimed are forfeited, as the spec says); a client whose cumulative
  amount is ahead gets the corrective 402 and resyncs.
- **stale client**: a cumulative amount that is not ``charged + price`` (or
  an old voucher replayed) gets the corrective 402: the offer's ``extra``
  carries ``channelState`` and ``voucherState``.
- **deposit**: its voucher's amount is judged against the channel as we
  know it first (:mod:`farthing.paywall.schemes.batch_settlement.deposit_check`), then the
  facilitator settles it on chain (its simulation checks the ERC-3009
  authorization), the mirror is updated, and the voucher path runs.
- **claims**: :class:`~farthing.paywall.schemes.batch_settlement.claims.ChannelClaimer` runs
  in the background while the app runs (the middleware starts it on the ASGI
  lifespan), unless ``claim_in_background`` is off.
- **books**: with a :class:`~farthing.paywall.records.books.ChannelRevenueBook`,
  each request's charge is booked as earned (a receivable), and the
  ``Claimed``/``Settled`` events of our claims, settles and refunds as they
  land (:mod:`farthing.paywall.schemes.batch_settlement.books`).
- **refund**: the zero-charge voucher must equal ``charged``; we sign the
  ``Refund`` and ``ClaimBatch`` as receiver authorizer and the facilitator
  claims what was earned and refunds the rest in one ``multicall``. The
  handler is not run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import anyio.to_thread

from farthing.faults import crash_point
from farthing.paywall.errors import PaymentStoreError, PaywallConfigError
from farthing.paywall.records.books import ChannelAsset, ChannelRevenueBook
from farthing.paywall.schemes.batch_settlement.books import ChannelBookkeeper
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.paywall.schemes.batch_settlement.contract import VoucherClaim
from farthing.paywall.schemes.batch_settlement.deposit_check import deposit_refusal
from farthing.paywall.schemes.batch_settlement.facilitator import ChannelSettling
from farthing.paywall.schemes.batch_settlement.holds import CHARGE_LEASE_S_DEFAULT, Hold, live_view
from farthing.paywall.schemes.batch_settlement.offers import ChannelOffers
from farthing.paywall.schemes.batch_settlement.refund_hold import hold_refund, release_refund
from farthing.paywall.schemes.batch_settlement.state import (
    ChannelRecord,
    ChannelStore,
    ChannelTerms,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment, ChannelRequirements
from farthing.paywall.schemes.batch_settlement.vouchers import (
    WITHDRAW_DELAY_MAX_S,
    WITHDRAW_DELAY_MIN_S,
    ClaimEntry,
    sign_claim_batch,
    sign_refund,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CHANNEL_NOT_FOUND,
    ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
    ERR_NETWORK_MISMATCH,
    ERR_RECEIVER_MISMATCH,
    ERR_TOKEN_MISMATCH,
    PAYLOAD_REFUND,
    DepositPayload,
    RefundPayload,
    VoucherPayload,
    parse_client_payload,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.wire import b64_json
from farthing.wallet.address import checksum
from farthing.wallet.errors import WalletError
from farthing.wallet.signer import Signer

__all__ = [
    "CHARGE_HEADER",
    "ChannelOptions",
    "ChannelPaywall",
    "ChannelReply",
    "claimer_of",
    "parse_charge",
]

CHARGE_HEADER: Final = "farthing-charge"
_ZERO: Final = checksum("0x" + "00" * 20)
_ERR_REFUND_NO_BALANCE: Final = "invalid_batch_settlement_evm_refund_no_balance"

log = logging.getLogger("farthing.paywall")


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """What the paywall needs to sell through channels, built and passed in.

    ``receiver_authorizer`` signs claims and refunds (its address is the
    offer's ``receiverAuthorizer``); it is never logged. ``min_deposit`` is
    advertised as ``extra.minDeposit`` when set.
    """

    store: ChannelStore
    receiver_authorizer: Signer
    withdraw_delay_s: int = WITHDRAW_DELAY_MIN_S
    min_deposit: int | None = None
    # Claim and settle in the background while the app runs (ASGI lifespan);
    # see farthing.paywall.schemes.batch_settlement.claims for the strategy.
    claim_in_background: bool = True
    claim_interval_s: float = 30.0
    claim_every_s: float = 3600.0
    claim_threshold: int | None = None
    # How long a voucher's charge is held for its answer (farthing.paywall.schemes.batch_settlement.holds).
    charge_lease_s: float = CHARGE_LEASE_S_DEFAULT

    def __post_init__(self) -> None:
        if not isinstance(self.store, ChannelStore):
            raise PaywallConfigError("channels.store must be a ChannelStore")
        lease_s = self.charge_lease_s
        if isinstance(lease_s, bool) or not isinstance(lease_s, (int, float)):
            raise PaywallConfigError("channels.charge_lease_s must be a number of seconds")
        if not 0.05 <= lease_s <= 86400:
            raise PaywallConfigError("channels.charge_lease_s must be 0.05 s to 24 h")
        if not WITHDRAW_DELAY_MIN_S <= self.withdraw_delay_s <= WITHDRAW_DELAY_MAX_S:
            raise PaywallConfigError(
                f"withdraw_delay_s must be {WITHDRAW_DELAY_MIN_S} to {WITHDRAW_DELAY_MAX_S} s"
            )


def parse_charge(value: str | None, ceiling: int) -> int:
    """What a handler's ``Farthing-Charge`` header charges: at most ``ceiling``, else the ceiling."""
    if value is None:
        return ceiling
    text = value.strip()
    if not text.isdigit() or len(text) > 39:
        log.warning("ignored a malformed %s header; charging the ceiling", CHARGE_HEADER)
        return ceiling
    return min(int(text), ceiling)


@dataclass(frozen=True, slots=True)
class ChannelReply:
    """What the middleware sends: a 402 (with ``reason`` and maybe corrective ``extra``),
    or the buffered answer with ``payment_response`` (a base64 header value)."""

    status: int
    reason: str | None = None
    detail: str = ""
    corrective: dict[str, Any] | None = None
    payment_response: str | None = None
    body: dict[str, Any] | None = None
    delivery: Delivery | None = None  # a held charge, made final by ChannelPaywall.deliver


@dataclass(frozen=True, slots=True)
class Delivery:
    """A 2xx answer's held charge: made final (then booked) once the answer is sent."""

    hold: Hold
    known: ChannelRecord  # the row as this request last wrote it
    offer: ChannelRequirements
    booked: ChannelRecord  # the charge's own record (its booking id comes from it)
    cumulative: int
    actual: int
    final: bool = False  # already final (a late handler), only the booking is left


Buffered = Any  # the middleware's buffered answer: .status, .headers, .body, .charge
RunHandler = Callable[[], Awaitable[Buffered]]


def claimer_of(
    options: ChannelOptions, facilitator: object, bookkeeper: ChannelBookkeeper | None
) -> ChannelClaimer:
    """The claimer ``options`` ask for: when to claim, and who books the claims."""
    return ChannelClaimer(
        options.store,
        facilitator,
        options.receiver_authorizer,
        interval_s=options.claim_interval_s,
        claim_every_s=options.claim_every_s,
        threshold=options.claim_threshold,
        bookkeeper=bookkeeper,
    )


class ChannelPaywall:
    """The batch-settlement side of one :class:`PaywallMiddleware`."""

    def __init__(
        self,
        options: ChannelOptions,
        facilitator: object,
        *,
        books: ChannelRevenueBook | None = None,
    ) -> None:
        if not isinstance(facilitator, ChannelSettling):
            raise PaywallConfigError(
                "a batch-settlement route needs a facilitator with verify_channel/settle_channel"
            )
        self.options = options
        self.store = options.store
        self.facilitator: ChannelSettling = facilitator
        self.authorizer = options.receiver_authorizer
        self.bookkeeper = None if books is None else ChannelBookkeeper(books, options.store)
        address = options.receiver_authorizer.address
        self.offers = ChannelOffers(address, options.withdraw_delay_s, options.min_deposit)
        self.claimer = claimer_of(options, facilitator, self.bookkeeper)

    def offer(
        self,
        *,
        network: str,
        asset: str,
        amount: int,
        pay_to: str,
        max_timeout_seconds: int,
        name: str,
        version: str,
    ) -> ChannelRequirements:
        """The route's ``accepts`` entry (a corrective 402's state is added by ``_refusal``)."""
        return self.offers.offer(network=network, asset=asset, amount=amount, pay_to=pay_to,
                                 max_timeout_seconds=max_timeout_seconds, name=name,
                                 version=version)  # fmt: skip

    async def _thread(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: method(*args, **kwargs))

    async def handle(
        self,
        offer: ChannelRequirements,
        payment: ChannelPayment,
        run: RunHandler,
        *,
        asset: ChannelAsset | None = None,
        metered: Callable[..., Awaitable[ChannelReply]] | None = None,
    ) -> tuple[ChannelReply, Buffered | None]:
        """Take one channel payment; the reply, and the buffered answer when it is to be sent.

        ``asset`` (decimals and symbol) lets the books register the token."""
        if asset is not None and self.bookkeeper is not None:
            self.bookkeeper.know(asset)
        accepted = payment.accepted
        if accepted.network != offer.network:
            return ChannelReply(402, ERR_NETWORK_MISMATCH, "paid on another network"), None
        if accepted.asset != offer.asset:
            return ChannelReply(402, ERR_TOKEN_MISMATCH, "paid in another token"), None
        if accepted.pay_to != offer.pay_to:
            return ChannelReply(402, ERR_RECEIVER_MISMATCH, "paid to another receiver"), None
        parsed = parse_client_payload(payment.payload)
        if isinstance(parsed, WireRefusal):
            return ChannelReply(402, parsed.reason, parsed.detail), None
        terms = self.offers.terms(offer)
        smart_wallet = parsed.config.payer_authorizer == _ZERO
        # A plain voucher is checked by the charge itself, in the worker thread
        # beside its write (the signature's recovery is the costliest step of
        # the hot path). Anything that reaches the chain first is checked here:
        # a config that is not ours is refused without spending the payer's
        # deposit authorization or asking the facilitator.
        checked = smart_wallet or not isinstance(parsed, VoucherPayload)
        if checked:
            refused = self.store.check_voucher(
                terms, parsed.config, parsed.voucher, signature_verified=True
            )
            if refused is not None:
                return ChannelReply(402, refused.reason, refused.detail), None
        verified = False
        if smart_wallet:
            check = await self.facilitator.verify_channel(self._ours(payment, offer), offer)
            if not check.valid:
                return ChannelReply(402, check.reason, check.message or ""), None
            verified = True
        if isinstance(parsed, RefundPayload):
            return await self._refund(offer, payment, parsed, terms, verified), None
        deposit_tx = ""
        if isinstance(parsed, DepositPayload):
            # Judged before the relayer pays gas for it (channel_deposit_check).
            refused = await self._thread(deposit_refusal, self.store, parsed.config,
                                         parsed.voucher, offer.amount)  # fmt: skip
            if refused is not None:
                return self._refusal(refused, offer), None
            settled = await self.facilitator.settle_channel(self._ours(payment, offer), offer)
            if not settled.success:
                return ChannelReply(402, settled.reason, settled.message or ""), None
            deposit_tx = settled.transaction
            crash_point("paywall.channel_after_deposit")
            await self._refresh(parsed.config, parsed.voucher.channel_id)
        return await self._voucher(
            offer, parsed, terms, verified, checked, deposit_tx, run, metered
        )

    def _ours(self, payment: ChannelPayment, offer: ChannelRequirements) -> ChannelPayment:
        """The payment as the facilitator should judge it: against our offer, not the client's.

        It keeps what the seller declared (``declared``), so a facilitator with
        a catalog lists a route sold through channels from its deposit."""
        return ChannelPayment(offer, payment.payload, payment.resource_url, payment.declared)

    async def _refresh(self, config: Any, channel_id: bytes) -> ChannelRecord | None:
        escrow = self.store.escrow
        if escrow is None:
            return None
        snapshot = await self._thread(escrow.snapshot, channel_id)
        record: ChannelRecord = await self._thread(self.store.mirror, config, snapshot)
        return record

    async def _recover(self, config: Any, channel_id: bytes) -> bool:
        """Re-read one channel from the chain into our row; whether it holds a balance there."""
        try:
            record = await self._refresh(config, channel_id)
        except (WalletError, PaymentStoreError) as exc:
            log.warning("could not recover channel %s: %s", channel_id.hex(), type(exc).__name__)
            return False
        return record is not None and record.balance > 0

    def _refusal(self, refused: ChargeRefused, offer: ChannelRequirements) -> ChannelReply:
        corrective = None
        if refused.record is not None and refused.reason in (
            ERR_CUMULATIVE_AMOUNT_MISMATCH,
            ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
        ):
            corrective = dict(refused.record.channel_state().to_wire())
        reply = ChannelReply(402, refused.reason, refused.detail)
        if corrective is not None and refused.record is not None:
            voucher = refused.record.voucher_state()
            return ChannelReply(
                402,
                refused.reason,
                refused.detail,
                {
                    "channelState": corrective,
                    **({"voucherState": voucher.to_wire()} if voucher is not None else {}),
                },
            )
        return reply

    async def _voucher(
        self,
        offer: ChannelRequirements,
        parsed: Any,
        terms: ChannelTerms,
        verified: bool,
        checked: bool,
        deposit_tx: str,
        run: RunHandler,
        metered: Callable[..., Awaitable[ChannelReply]] | None = None,
    ) -> tuple[ChannelReply, Buffered | None]:
        price = offer.amount
        voucher = parsed.voucher

        async def reserve() -> ChargeAccepted | ChargeRefused:
            # Shielded: once a charge is written this request must know it, so
            # that a cancellation while the handler runs releases it (below).
            with anyio.CancelScope(shield=True):
                result = await self.store.charge_async(
                    terms,
                    parsed.config,
                    voucher,
                    price=price,
                    actual=price,
                    signature_verified=verified,
                    checked=checked,
                    hold_s=self.options.charge_lease_s,
                )
            return result

        charged = await reserve()
        # Our row may be missing or out of date (state lost, or a deposit made
        # elsewhere while our mirror was fresh): recover the channel from the
        # chain, as the spec allows, and try once more. The config was already
        # checked to hash to the voucher's channel id and to match our terms.
        if (
            isinstance(charged, ChargeRefused)
            and charged.reason == ERR_CHANNEL_NOT_FOUND
            and await self._recover(parsed.config, voucher.channel_id)
        ):
            charged = await reserve()
        if isinstance(charged, ChargeRefused):
            return self._refusal(charged, offer), None
        assert isinstance(charged, ChargeAccepted) and charged.hold is not None
        hold, known = charged.hold, charged.record
        crash_point("paywall.channel_after_charge")
        if metered is not None:  # streamed: it sends, and charges as the stream ends (.stream)
            return await metered(hold, known, deposit_tx), None
        try:
            buffered = await run()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.update_hold_async(hold, known=known)
            raise
        if not 200 <= buffered.status < 300:
            await self.store.update_hold_async(hold, known=known)
            return ChannelReply(buffered.status), buffered
        actual = parse_charge(buffered.charge, price)
        after: ChannelRecord | None = known
        if actual < price:
            after = await self.store.update_hold_async(hold, keep=actual, known=known)
            hold = replace(hold, amount=actual)
        final = False
        if after is not None and hold.late(time.time_ns()):
            # Past half its lease: another process may count it lapsed soon.
            # Final now, before anything is sent, or nothing is sent at all.
            after = await self.store.update_hold_async(hold, charge=actual, known=after)
            final = True
        if after is None:
            detail = "the charge's lease ran out while the handler ran; nothing was charged"
            return ChannelReply(402, ERR_CHANNEL_BUSY, detail), None
        crash_point("paywall.channel_after_handler")
        state = after.channel_state().to_wire()
        response = {
            "success": True,
            "transaction": deposit_tx,
            "network": offer.network,
            "payer": parsed.config.payer,
            "amount": str(actual),
            "extra": {"chargedAmount": str(actual), "channelState": state},
        }
        delivery = Delivery(hold, after, offer, known, voucher.max_claimable_amount, actual, final)
        reply = ChannelReply(200, payment_response=b64_json(response), delivery=delivery)
        return reply, buffered

    async def deliver(
        self, reply: ChannelReply, send_answer: Callable[[], Awaitable[None]]
    ) -> None:
        """Send a buffered answer; a held charge becomes final once it was handed to the server.

        If sending fails, the hold is freed: the payer is never charged for
        an answer it may not have got.
        """
        delivery = reply.delivery
        if delivery is None:
            await send_answer()
            return
        hold = delivery.hold
        try:
            await send_answer()
        except BaseException:
            if not delivery.final:
                with anyio.CancelScope(shield=True):
                    await self.store.update_hold_async(hold, known=delivery.known)
            raise
        with anyio.CancelScope(shield=True):
            if not delivery.final and hold.amount > 0:
                done = await self.store.update_hold_async(
                    hold, charge=hold.amount, known=delivery.known
                )
                if done is None:
                    log.warning("a channel charge lapsed before its answer was sent; not charged")
                    return
            await self._book_earned(
                delivery.offer, delivery.booked, delivery.cumulative, delivery.actual
            )

    async def _book_earned(
        self, offer: ChannelRequirements, record: ChannelRecord, cumulative: int, amount: int
    ) -> None:
        keeper = self.bookkeeper
        if keeper is None:
            return
        asset = keeper.assets.get(checksum(offer.asset))
        if asset is None:
            log.warning("a channel charge was not booked: the token's decimals are not known")
            return
        try:
            await self._thread(keeper.earned, asset, record, cumulative, amount, "")
        except Exception as exc:  # noqa: BLE001 - the payer was served; reconciliation shows it
            log.warning("a channel charge was not booked: %s", type(exc).__name__)

    async def _sync_books(self, from_block: int | None) -> None:
        keeper = self.bookkeeper
        if keeper is None or from_block is None:
            return
        try:
            await self._thread(keeper.sync, from_block=from_block)
        except Exception as exc:  # noqa: BLE001 - booked later by the claimer or the CLI
            log.warning("channel events were not booked: %s", type(exc).__name__)

    async def _head(self) -> int | None:
        escrow = self.store.escrow
        if escrow is None or self.bookkeeper is None:
            return None
        try:
            head: int = await self._thread(escrow.chain.block_number)
        except Exception:  # noqa: BLE001 - only the bookkeeping's starting point
            return None
        return head

    async def _refund(
        self,
        offer: ChannelRequirements,
        payment: ChannelPayment,
        parsed: RefundPayload,
        terms: ChannelTerms,
        verified: bool,
    ) -> ChannelReply:
        config, voucher = parsed.config, parsed.voucher
        await self._refresh(config, voucher.channel_id)
        checked = await self._thread(
            self.store.check_refund, terms, config, voucher, signature_verified=verified
        )
        if isinstance(checked, ChargeRefused):
            return self._refusal(checked, offer)
        record: ChannelRecord = checked
        if live_view(record, time.time_ns()).held > 0:
            # A request is still being answered: its charge is not known yet.
            return ChannelReply(402, ERR_CHANNEL_BUSY, "a request on this channel is in flight")
        remainder = record.balance - record.charged
        amount = remainder if parsed.amount is None else parsed.amount
        if remainder <= 0 or amount > remainder:
            return ChannelReply(402, _ERR_REFUND_NO_BALANCE, "nothing (or less) is refundable")
        # Held before it is signed: no voucher is taken against the balance it returns.
        held = await self._thread(hold_refund, self.store, record, amount)
        if isinstance(held, ChargeRefused):
            return self._refusal(held, offer)
        record = held
        domain = self.store.domain
        claims: list[VoucherClaim] = []
        claim_signature = None
        if record.charged > record.total_claimed:
            claims = [VoucherClaim(config, voucher.max_claimable_amount, voucher.signature,
                                   record.charged)]  # fmt: skip
            entry = ClaimEntry(voucher.channel_id, voucher.max_claimable_amount, record.charged)
            claim_signature = sign_claim_batch(self.authorizer, domain, [entry])
        refund_signature = sign_refund(
            self.authorizer, domain, voucher.channel_id, record.refund_nonce, amount
        )
        enriched: dict[str, Any] = {
            **parsed.to_wire(),
            "type": PAYLOAD_REFUND,
            "amount": str(amount),
            "refundNonce": str(record.refund_nonce),
            "claims": [
                {
                    "voucher": {
                        "channel": c.config.to_wire(),
                        "maxClaimableAmount": str(c.max_claimable_amount),
                    },
                    "signature": "0x" + c.signature.hex(),
                    "totalClaimed": str(c.total_claimed),
                }
                for c in claims
            ],
            "refundAuthorizerSignature": "0x" + refund_signature.hex(),
        }
        if claim_signature is not None:
            enriched["claimAuthorizerSignature"] = "0x" + claim_signature.hex()
        request = ChannelPayment(offer, enriched, payment.resource_url)
        head = await self._head()
        settled = await self.facilitator.settle_channel(request, offer)
        if not settled.success:
            await self._thread(release_refund, self.store, voucher.channel_id, record.refund_nonce)
            return ChannelReply(402, settled.reason, settled.message or "")
        after = await self._refresh(config, voucher.channel_id) or record
        await self._sync_books(head)
        response = {
            "success": True,
            "transaction": settled.transaction,
            "network": offer.network,
            "payer": config.payer,
            "amount": str(settled.amount if settled.amount is not None else amount),
            "extra": {"channelState": after.channel_state().to_wire()},
        }
        return ChannelReply(
            200,
            payment_response=b64_json(response),
            body={"refunded": response["amount"], "transaction": settled.transaction},
        )
