"""Paying through x402 ``batch-settlement`` channels: deposit once, then one cumulative voucher per request.

:class:`ChannelPayer` is the channel half of :class:`~farthing.agents.payer.Payer`
(which calls it when :func:`~farthing.agents.selection.choose_offer` picks a
``batch-settlement`` offer). For one request, :meth:`ChannelPayer.prepare`:

1. builds the channel config from the offer (receiver, its authorizer, token,
   withdraw delay) with this wallet as payer and voucher signer (a smart
   account's owner key as ``payerAuthorizer``), and leases a
   channel slot (``farthing.agents.channels.store``); a slot the books do not
   know is looked up on chain first (**cold start**: its balance and
   ``totalClaimed`` come from the escrow's ``channels`` view);
2. reserves the charge (the price, the voucher's ceiling) against every
   budget, before anything is signed;
3. when the channel cannot cover ``charged + price``, plans a deposit
   (``farthing.agents.channels.deposits``: a person approves one above the
   policy's threshold, with no lease or reservation held while they decide;
   a withdraw delay above the policy's bound is refused), reserves it, at
   most what the budget has left less what is already locked
   (``farthing.agents.channels.books.deposit_room``), and signs its ERC-3009
   ``ReceiveWithAuthorization`` to the deposit collector;
4. signs the voucher ``charged + price``.

:meth:`ChannelPayer.finish` applies the spec's **client checks** to the
seller's ``PAYMENT-RESPONSE``: ``chargedAmount`` at most the ceiling, and
``channelState.chargedCumulativeAmount`` (when sent) equal to the cumulative
the agent has checked plus this charge. A failed check books the charge at
the ceiling (all the seller can claim), **stops** the channel (no voucher is
signed on it again) and starts a timed withdrawal (``initiateWithdraw``).

A **corrective 402** (``cumulative_amount_mismatch`` or
``cumulative_below_claimed``) is resynced only to what the agent can verify
it owes (:meth:`ChannelPayer._resync`): the seller's ``chargedCumulativeAmount``
is adopted only with a ``voucherState`` whose signature recovers to the
channel's ``payerAuthorizer`` (this wallet, or a smart account's owner key), at least the chain's ``totalClaimed`` and at most the voucher signed;
without it, the chain's ``totalClaimed``. The paying client then retries the
request once.

The scheme's own steps (the config and id, the deposit's authorization, the
voucher and its payload, the response checks, reading a corrective 402) are
its client part, ``farthing.paywall.schemes.batch_settlement.client``; this
module keeps the agent's decisions, leases and books. A channel whose last
request died is recovered by ``recovery``; ``withdraw`` leaves a channel;
``reconcile`` matches the channels to the chain.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import httpx

from farthing.agents.challenge import Challenge, Offer, SellerAnswer, answer_of
from farthing.agents.channels.books import (
    ChargeIntent,
    book_extra_charge,
    booked_charges,
    post_charge,
    post_deposit,
    reserve_charge,
    void_pending,
)
from farthing.agents.channels.deposits import (
    ask_for_deposit,
    deposit_needs_approval,
    lock_deposit,
    plan_deposit,
    refusal,
)
from farthing.agents.channels.prepared import ChannelPrepared
from farthing.agents.channels.recovery import Adopted, adopt, cold_start, settle_deposit_from_chain
from farthing.agents.channels.store import acquire, get_channel, release, slot_salt, update_channel
from farthing.agents.channels.withdraw import stop_channel
from farthing.agents.outcome import PaymentOutcome
from farthing.faults import crash_point
from farthing.ledger import new_id
from farthing.paywall.schemes.batch_settlement.client import (
    CORRECTIVE_ERRORS,
    OfferRefusal,
    channel_config,
    channel_id_of,
    channel_key,
    check_response,
    deposit_authorization_again,
    payment_header,
    read_correction,
    read_offer,
    sign_deposit,
    voucher_payload,
    voucher_signer,
)
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.extras import BatchExtra
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, ChannelDomain
from farthing.paywall.schemes.batch_settlement.wire import SCHEME, Erc3009Deposit
from farthing.wallet.errors import ChainError
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS

if TYPE_CHECKING:
    from farthing.agents.payer import Intent, Payer

__all__ = ["ChannelPayer"]

log = logging.getLogger("farthing.agents")

_WAIT_POLL_S: Final = 0.05


class ChannelPayer:
    """The channel side of one :class:`Payer`: same signer, chain, asset and books."""

    def __init__(self, payer: Payer) -> None:
        self.payer = payer
        self.settlement = CANONICAL_CHANNEL_CONTRACTS.settlement
        self.collector = CANONICAL_CHANNEL_CONTRACTS.erc3009_collector
        self.escrow = ChannelEscrow(payer.chain, self.settlement)
        self.domain = ChannelDomain(payer.chain.chain_id, self.settlement)
        self._owner_prefix = secrets.token_hex(8)

    @property
    def books(self) -> Any:
        return self.payer.books

    # ------------------------------------------------------------ configs

    def configs(self, offer: Offer, extra: BatchExtra) -> list[ChannelConfig]:
        # A smart account's vouchers are signed by its owner key (plain ECDSA);
        # a key's channel names itself, as before.
        base = channel_config(
            payer=self.payer.address,
            receiver=offer.requirements.pay_to,
            token=offer.requirements.asset,
            extra=extra,
            payer_authorizer=voucher_signer(self.payer.signer).address,
        )
        agent = self.books.agent_id
        return [
            replace(base, salt=slot_salt(agent, base, slot))
            for slot in range(self.payer.settings.channel_slots_max)
        ]

    def channel_id(self, config: ChannelConfig) -> str:
        return channel_id_of(self.domain, config)

    # ------------------------------------------------------------ before sending

    def prepare(
        self,
        url: str,
        challenge: Challenge,
        offer: Offer,
        intent: Intent,
        *,
        approved_deposit: int = 0,
        approval_id: int | None = None,
    ) -> ChannelPrepared | PaymentOutcome:
        """Lease a channel, reserve the charge (and a deposit if needed), sign; see the module doc.

        ``approved_deposit``: the deposit a person approved (``approval_id``)
        on the first pass; a larger one asks again (``farthing.agents.channels.deposits``).
        """
        from farthing.agents.payer import _not_paid, _Terms

        price = offer.requirements.amount
        terms = _Terms(price, self.payer.asset, offer.requirements.pay_to)
        extra = read_offer(offer.raw.get("extra"))
        if isinstance(extra, OfferRefusal):
            return _not_paid(url, intent, extra.reason, extra.message, terms)
        configs = self.configs(offer, extra)
        ids = [self.channel_id(c) for c in configs]
        owner = f"{self._owner_prefix}:{new_id():x}"
        deadline = time.monotonic() + self.payer.settings.channel_wait_s
        while True:
            lease = acquire(
                self.books,
                configs=configs,
                channel_ids=ids,
                network=self.payer.asset.network,
                escrow=self.settlement,
                price=price,
                owner=owner,
                lease_s=self.payer.settings.channel_lease_s,
            )
            if lease is not None or time.monotonic() >= deadline:
                break
            time.sleep(_WAIT_POLL_S)
        if lease is None:
            detail = "every channel to this seller is busy or stopped"
            return _not_paid(url, intent, "channel_busy", detail, terms)
        adopted: Adopted | None = None
        try:
            row = lease.row if lease.row is not None else cold_start(self, lease)
            if row.inflight_id is not None:
                adopted = adopt(self, row)
                row = adopted.row
        except ChainError as exc:
            release(self.books, lease)
            return _not_paid(url, intent, "chain_unavailable", str(exc), terms)
        if (
            adopted is not None
            and adopted.orphan_id is not None
            and adopted.orphan_ceiling >= price
        ):
            # The dead request's charge is re-presented as this one: its voucher
            # (charged + price) is the same, so the seller charges it once.
            payment_id = adopted.orphan_id
        else:
            if adopted is not None and adopted.orphan_id is not None:
                # Too small to cover this request. If the seller did charge it,
                # its corrective 402 proves it and the resync books it.
                void_pending(self.books, adopted.orphan_id)
            payment_id = new_id()
            reserved = reserve_charge(
                self.books,
                ChargeIntent(
                    payment_id=payment_id,
                    channel_id=lease.channel_id,
                    pay_to=offer.requirements.pay_to,
                    ceiling=price,
                    resource=url,
                    task_id=intent.task_id,
                    purpose=intent.purpose,
                ),
            )
            if reserved != "ok":
                release(self.books, lease)
                return _not_paid(url, intent, reserved, None, terms)
        needed = row.charged + price
        deposit_id: int | None = None
        deposit_amount = 0
        deposit_wire: Erc3009Deposit | None = None
        resend = adopted.resend if adopted is not None else None
        if needed > row.balance and resend is not None and row.balance + resend.amount >= needed:
            # The dead request's deposit never reached the chain and is still
            # valid: sign it again, byte for byte, so it can land only once.
            deposit_id, deposit_amount = resend.deposit_id, resend.amount
            assert resend.valid_after is not None and resend.valid_before is not None
            authorization = deposit_authorization_again(
                payer=self.payer.address,
                collector=self.collector,
                channel_id=lease.channel_id,
                deposit_id=resend.deposit_id,
                value=resend.amount,
                valid_after=resend.valid_after,
                valid_before=resend.valid_before,
            )
            deposit_wire = sign_deposit(
                self.payer.signer,
                self.payer.asset,
                lease.channel_id,
                authorization,
                resend.deposit_id,
            )
        elif needed > row.balance:
            policy = self.books.policy()
            planned = plan_deposit(
                policy, self.payer.settings, extra, price=price, missing=needed - row.balance
            )
            if isinstance(planned, str) or deposit_needs_approval(
                policy, planned, approved_deposit
            ):
                # Nothing is held while a person decides: no charge, no lease.
                void_pending(self.books, payment_id)
                release(self.books, lease)
                if isinstance(planned, str):
                    detail = f"withdraw delay {extra.withdraw_delay_s} s"
                    return _not_paid(url, intent, planned, detail, terms)
                pay_to = offer.requirements.pay_to
                decided = ask_for_deposit(self.payer, policy, planned, pay_to, url, intent)
                if decided.status != "approved":
                    asked = replace(terms, amount=planned, approval_id=decided.id)
                    return _not_paid(url, intent, refusal(decided), decided.note, asked)
                again = {"approved_deposit": planned, "approval_id": decided.id}
                return self.prepare(url, challenge, offer, intent, **again)
            refused = lock_deposit(self, row, planned, needed, intent, offer)
            if isinstance(refused, str):
                void_pending(self.books, payment_id)
                release(self.books, lease)
                return _not_paid(url, intent, refused, None, terms)
            deposit_id, deposit_amount, authorization = refused
            try:
                deposit_wire = sign_deposit(
                    self.payer.signer, self.payer.asset, lease.channel_id, authorization, deposit_id
                )
            except BaseException:
                void_pending(self.books, deposit_id)
                void_pending(self.books, payment_id)
                release(self.books, lease)
                raise
        payload = voucher_payload(
            self.payer.signer,
            self.domain,
            lease.config,
            lease.channel_id,
            needed,
            deposit=deposit_wire,
            deposit_amount=deposit_amount,
        )
        update_channel(
            self.books,
            lease.channel_id,
            signed_max=max(row.signed_max, needed),
            inflight_id=payment_id,
            resource=url[:2048],
            offer=dict(offer.raw),
        )
        header = payment_header(payload, accepted=offer.raw, resource=challenge.resource, url=url)
        # Reserved, signed and recorded as in flight; nothing sent yet.
        if deposit_wire is not None:
            crash_point("agent.channel_after_deposit_signed")
        else:
            crash_point("agent.channel_after_voucher_signed")
        return ChannelPrepared(
            url=url,
            offer=offer,
            intent=intent,
            payment_id=payment_id,
            lease=lease,
            voucher=payload.voucher,
            ceiling=price,
            charged_before=row.charged,
            balance_before=row.balance,
            header=header,
            asset=self.payer.asset,
            deposit_id=deposit_id,
            deposit_amount=deposit_amount,
            approval_id=approval_id if deposit_id is not None else None,
        )

    # ------------------------------------------------------------ after sending

    def finish(self, prepared: ChannelPrepared, response: httpx.Response) -> PaymentOutcome:
        """Check and book the seller's HTTP answer to a voucher; see the module doc."""
        return self.conclude(prepared, answer_of(response))

    def conclude(self, prepared: ChannelPrepared, answer: SellerAnswer) -> PaymentOutcome:
        """Check and book the seller's answer to a voucher, from any transport; see the module doc."""
        # The seller answered; nothing of its answer is booked yet.
        if prepared.deposit_id is not None:
            crash_point("agent.channel_after_deposit_sent")
        else:
            crash_point("agent.channel_after_voucher_sent")
        data = dict(answer.settlement) if answer.settlement is not None else None
        if answer.delivered and data is not None and data.get("success") is True:
            return self._charged(prepared, data)
        if answer.refused:
            challenge = answer.challenge
            error = challenge.error if isinstance(challenge, Challenge) else None
            seller_reason = (data or {}).get("errorReason") or error or "payment_not_accepted"
            void_pending(self.books, prepared.payment_id)
            balance = settle_deposit_from_chain(self, prepared)
            resynced = False
            if isinstance(challenge, Challenge) and error in CORRECTIVE_ERRORS:
                resynced = self._resync(prepared, challenge)
            if not resynced:
                release(self.books, prepared.lease, inflight_id=None, balance=balance)
            if resynced:
                return prepared.outcome("refused", "channel_resynced", message=seller_reason)
            return prepared.outcome("refused", str(seller_reason))
        # No readable answer: the seller may have charged. The charge stays
        # reserved and in flight; the next corrective 402 or reconciliation
        # settles it.
        release(self.books, prepared.lease)
        detail = f"the seller answered {answer.status}"
        return prepared.outcome("possible_spend", "settlement_unknown", message=detail)

    def after_error(self, prepared: ChannelPrepared, error: BaseException) -> PaymentOutcome:
        release(self.books, prepared.lease)
        detail = f"{type(error).__name__} after the voucher was sent"
        return prepared.outcome("possible_spend", "timeout", message=detail)

    def _charged(self, prepared: ChannelPrepared, data: dict[str, Any]) -> PaymentOutcome:
        checked = check_response(
            data,
            ceiling=prepared.ceiling,
            channel_id=prepared.channel_id,
            charged_before=prepared.charged_before,
        )
        charged, violation, tx_hash = checked.charged, checked.violation, checked.tx_hash
        balance = prepared.balance_before
        if prepared.deposit_id is not None:
            post_deposit(
                self.books,
                prepared.deposit_id,
                tx_hash=tx_hash or None,
                block_number=None,
                payer=self.payer.address,
                collector=self.collector,
            )
            balance += prepared.deposit_amount
        # A failed check books the most the seller can claim with our voucher.
        booked = prepared.ceiling if violation else charged
        result = post_charge(self.books, prepared.payment_id, prepared.channel_id, booked)
        if result not in ("ok", "exists"):
            log.warning("posting channel charge %d failed: %s", prepared.payment_id, result)
        release(
            self.books,
            prepared.lease,
            charged=prepared.charged_before + booked,
            balance=balance,
            inflight_id=None,
        )
        if violation is None:
            return prepared.outcome(
                "paid", None, tx_hash=tx_hash if prepared.deposit_id else None, amount=booked
            )
        started = stop_channel(self, prepared.channel_id, violation)
        message = f"the seller failed the channel check ({violation}); {started}"
        log.warning("channel %s: %s", prepared.channel_id, message)
        return prepared.outcome("paid", violation, message=message, amount=booked)

    # ------------------------------------------------------------ corrective 402

    def _resync(self, prepared: ChannelPrepared, challenge: Challenge) -> bool:
        """Adopt the seller's channel state only as far as the agent can verify it owes it."""
        offer = next((o for o in challenge.offers if o.requirements.scheme == SCHEME), None)
        if offer is None:
            return False
        correction = read_correction(offer.raw.get("extra"), prepared.channel_id)
        if correction is None:
            return False
        try:
            balance, claimed = self.escrow.channel(channel_key(prepared.channel_id))
        except ChainError:
            return False
        row = get_channel(self.books, prepared.channel_id)
        if row is None:
            return False
        # At least what the chain proves; the seller's figure only with our signature.
        # The voucher's signer is the channel's payerAuthorizer (a smart account's owner key).
        charged, signed_max = correction.owed(
            self.domain,
            payer=row.config.payer_authorizer,
            claimed=claimed,
            signed_max=row.signed_max,
        )
        if charged > balance:
            return False
        booked = booked_charges(self.books, prepared.channel_id)
        if charged > booked:
            # We signed for it (or the chain claimed it) but never booked it:
            # the answer that would have told us was lost.
            result = book_extra_charge(
                self.books,
                transfer_id=new_id(),
                channel_id=prepared.channel_id,
                pay_to=row.config.receiver,
                amount=charged - booked,
            )
            if result not in ("ok", "exists"):
                log.warning("booking a resynced charge failed: %s", result)
        release(
            self.books,
            prepared.lease,
            charged=charged,
            balance=balance,
            total_claimed=claimed,
            signed_max=signed_max,
            inflight_id=None,
        )
        return True
