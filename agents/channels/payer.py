"""Paying through x402 ``batch-settlement`` channels: deposit once, then one cumulative voucher per request.

:class:`ChannelPayer` is the channel half of :class:`~farthing.agents.payer.Payer`
(which calls it when :func:`~farthing.agents.selection.choose_offer` picks a
``batch-settlement`` offer). For one request, :meth:`ChannelPayer.prepare`:

1. builds the channel config from the offer (receiver, its authorizer, token,
   withdraw delay) with this wallet as payer and voucher signer, and leases a
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
is adopted only with a ``voucherState`` whose signature recovers to this
wallet, at least the chain's ``totalClaimed`` and at most the voucher signed;
without it, the chain's ``totalClaimed``. The paying client then retries the
request once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, cast

import httpx
from eth_abi.abi import decode as abi_decode

from farthing.agents.challenge import Challenge, Offer, read_challenge
from farthing.agents.channels.books import (
    ChargeIntent,
    DepositAuthorization,
    OpenDeposit,
    book_extra_charge,
    book_refund,
    booked_charges,
    open_charge,
    open_deposits,
    post_charge,
    post_deposit,
    reserve_charge,
    reserve_deposit,
    void_pending,
)
from farthing.agents.channels.deposits import (
    ask_for_deposit,
    deposit_needs_approval,
    plan_deposit,
    refusal,
)
from farthing.agents.channels.store import (
    ChannelRow,
    Lease,
    acquire,
    get_channel,
    list_channels,
    release,
    slot_salt,
    update_channel,
)
from farthing.agents.outcome import OutcomeStatus, PaymentOutcome
from farthing.faults import crash_point
from farthing.ledger import new_id
from farthing.paywall.schemes.batch_settlement import wire
from farthing.paywall.schemes.batch_settlement.contract import ESCROW_EVENT_TOPICS, ChannelEscrow
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    SignedVoucher,
    deposit_nonce,
    sign_voucher,
)
from farthing.paywall.wire import (
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    X402_VERSION,
    b64_json,
    unb64_json,
)
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.eip3009 import (
    Authorization,
    TokenDomain,
    build_authorization,
    sign_receive_authorization,
)
from farthing.wallet.errors import ChainError
from farthing.wallet.money import Asset
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import TxSigner
from farthing.wallet.token import Stablecoin

if TYPE_CHECKING:
    from farthing.agents.payer import Intent, Payer

__all__ = [
    "CORRECTIVE_ERRORS",
    "ChannelBreak",
    "ChannelPayer",
    "ChannelPrepared",
    "ChannelResolution",
    "reconcile_channels",
    "resolve_channels",
]

log = logging.getLogger("farthing.agents")

CORRECTIVE_ERRORS: Final = frozenset(
    {wire.ERR_CUMULATIVE_AMOUNT_MISMATCH, wire.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED}
)
_ZERO_SALT: Final = b"\x00" * 32
_WAIT_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class ChannelPrepared:
    """A reserved charge (and maybe a deposit) with its signed voucher, ready to send."""

    url: str
    offer: Offer
    intent: Intent
    payment_id: int
    lease: Lease
    voucher: SignedVoucher
    ceiling: int
    charged_before: int
    balance_before: int
    header: tuple[str, str]
    asset: Asset
    deposit_id: int | None = None
    deposit_amount: int = 0
    approval_id: int | None = None

    @property
    def channel_id(self) -> str:
        return self.lease.channel_id

    def outcome(
        self,
        status: OutcomeStatus,
        reason: str | None = None,
        *,
        message: str | None = None,
        tx_hash: str | None = None,
        amount: int | None = None,
    ) -> PaymentOutcome:
        return PaymentOutcome(
            status=status,
            url=self.url,
            reason=reason,
            message=message,
            amount=self.ceiling if amount is None else amount,
            asset=self.asset,
            pay_to=self.offer.requirements.pay_to,
            payment_id=self.payment_id,
            tx_hash=tx_hash,
            task_id=self.intent.task_id,
            purpose=self.intent.purpose,
            approval_id=self.approval_id,
        )


def _cid(channel_id: str) -> bytes:
    return bytes.fromhex(channel_id[2:])


def _deposit_salt(deposit_id: int) -> int:
    """A deposit's salt, derived from its id (saved before signing), so a retry signs the same bytes."""
    digest = hashlib.sha256(b"farthing.agents.channel-deposit\x1f" + deposit_id.to_bytes(16, "big"))
    return int.from_bytes(digest.digest(), "big")


@dataclass(frozen=True, slots=True)
class _Adopted:
    """What :meth:`ChannelPayer._adopt` learned about a channel whose last request died."""

    row: ChannelRow
    orphan_id: int | None  # the dead request's charge, still reserved
    orphan_ceiling: int
    resend: OpenDeposit | None  # its deposit, unused on chain and still inside its window


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

    def configs(self, offer: Offer, extra: wire.BatchExtra) -> list[ChannelConfig]:
        me = self.payer.address
        base = ChannelConfig(
            payer=me,
            payer_authorizer=me,
            receiver=offer.requirements.pay_to,
            receiver_authorizer=extra.receiver_authorizer,
            token=offer.requirements.asset,
            withdraw_delay_s=extra.withdraw_delay_s,
            salt=_ZERO_SALT,
        )
        agent = self.books.agent_id
        return [
            replace(base, salt=slot_salt(agent, base, slot))
            for slot in range(self.payer.settings.channel_slots_max)
        ]

    def channel_id(self, config: ChannelConfig) -> str:
        return "0x" + self.domain.channel_id(config).hex()

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
        extra = wire.parse_extra(offer.raw.get("extra"))
        if isinstance(extra, wire.WireRefusal):
            return _not_paid(url, intent, "malformed_payment_required", extra.reason, terms)
        if extra.asset_transfer_method not in (None, "eip3009"):
            return _not_paid(url, intent, "unsupported_scheme", "permit2 deposits", terms)
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
        adopted: _Adopted | None = None
        try:
            row = lease.row if lease.row is not None else self._cold_start(lease)
            if row.inflight_id is not None:
                adopted = self._adopt(row)
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
        deposit_wire: wire.Erc3009Deposit | None = None
        resend = adopted.resend if adopted is not None else None
        if needed > row.balance and resend is not None and row.balance + resend.amount >= needed:
            # The dead request's deposit never reached the chain and is still
            # valid: sign it again, byte for byte, so it can land only once.
            deposit_id, deposit_amount = resend.deposit_id, resend.amount
            assert resend.valid_after is not None and resend.valid_before is not None
            deposit_wire = self._sign_deposit(
                lease,
                Authorization(
                    from_address=self.payer.address,
                    to=self.collector,
                    value=resend.amount,
                    valid_after=resend.valid_after,
                    valid_before=resend.valid_before,
                    nonce=deposit_nonce(_cid(lease.channel_id), _deposit_salt(resend.deposit_id)),
                ),
                _deposit_salt(resend.deposit_id),
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
            refused = self._reserve_deposit(row, planned, needed, intent, offer)
            if isinstance(refused, str):
                void_pending(self.books, payment_id)
                release(self.books, lease)
                return _not_paid(url, intent, refused, None, terms)
            deposit_id, deposit_amount, authorization = refused
            try:
                deposit_wire = self._sign_deposit(lease, authorization, _deposit_salt(deposit_id))
            except BaseException:
                void_pending(self.books, deposit_id)
                void_pending(self.books, payment_id)
                release(self.books, lease)
                raise
        voucher = sign_voucher(self.payer.signer, self.domain, _cid(lease.channel_id), needed)
        payload: Any
        if deposit_wire is not None:
            payload = wire.DepositPayload(lease.config, voucher, deposit_amount, deposit_wire)
        else:
            payload = wire.VoucherPayload(lease.config, voucher)
        update_channel(
            self.books,
            lease.channel_id,
            signed_max=max(row.signed_max, needed),
            inflight_id=payment_id,
            resource=url[:2048],
            offer=dict(offer.raw),
        )
        body = {
            "x402Version": X402_VERSION,
            "payload": payload.to_wire(),
            "accepted": dict(offer.raw),
            "resource": dict(challenge.resource) if challenge.resource else {"url": url},
        }
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
            voucher=voucher,
            ceiling=price,
            charged_before=row.charged,
            balance_before=row.balance,
            header=(PAYMENT_SIGNATURE_HEADER, b64_json(body)),
            asset=self.payer.asset,
            deposit_id=deposit_id,
            deposit_amount=deposit_amount,
            approval_id=approval_id if deposit_id is not None else None,
        )

    def _cold_start(self, lease: Lease) -> ChannelRow:
        """A slot the books do not know: whatever the chain holds for it is ours (a lost database)."""
        snapshot = self.escrow.snapshot(_cid(lease.channel_id))
        # The ledger may have outlived the channel records: what it booked was
        # charged. The seller's corrective 402 settles any difference.
        charged = min(
            snapshot.balance,
            max(snapshot.total_claimed, booked_charges(self.books, lease.channel_id)),
        )
        values = {
            "balance": snapshot.balance,
            "charged": charged,
            "signed_max": charged,
            "total_claimed": snapshot.total_claimed,
        }
        if snapshot.balance:
            log.info("channel %s recovered from the chain", lease.channel_id)
        update_channel(self.books, lease.channel_id, **values)
        row = get_channel(self.books, lease.channel_id)
        assert row is not None  # the lease inserted it
        return row

    def _reserve_deposit(
        self,
        row: ChannelRow,
        wanted: int,
        needed: int,
        intent: Intent,
        offer: Offer,
    ) -> tuple[int, int, Authorization] | str:
        """Lock a deposit of ``wanted`` (or less: the budget's room) and fix its authorization.

        The nonce comes from the id, the window from the chain's clock.
        """
        settings = self.payer.settings
        missing = needed - row.balance
        deposit_id = new_id()
        try:
            now = self.payer.chain.timestamp()
        except ChainError:
            return "chain_unavailable"
        terms = build_authorization(
            from_address=self.payer.address,
            to=self.collector,
            value=wanted,
            valid_for_s=min(settings.valid_for_s, offer.requirements.max_timeout_seconds),
            now=now,
            nonce=deposit_nonce(_cid(row.channel_id), _deposit_salt(deposit_id)),
        )
        locked = reserve_deposit(
            self.books,
            deposit_id=deposit_id,
            channel_id=row.channel_id,
            amount=wanted,
            wanted_min=missing,
            task_id=intent.task_id,
            authorization=DepositAuthorization(
                nonce="0x" + terms.nonce.hex(),
                payer=self.payer.address,
                valid_after=terms.valid_after,
                valid_before=terms.valid_before,
            ),
        )
        if isinstance(locked, str):
            return locked
        try:
            balance = self.payer.balance()
        except ChainError:
            void_pending(self.books, deposit_id)
            return "chain_unavailable"
        if balance < locked:
            void_pending(self.books, deposit_id)
            return "insufficient_balance"
        return deposit_id, locked, replace(terms, value=locked)

    def _sign_deposit(
        self, lease: Lease, authorization: Authorization, salt: int
    ) -> wire.Erc3009Deposit:
        if authorization.nonce != deposit_nonce(_cid(lease.channel_id), salt):
            raise AssertionError("a deposit's nonce must be the channel's nonce for its salt")
        signed = sign_receive_authorization(
            self.payer.signer, authorization, TokenDomain.for_asset(self.payer.asset)
        )
        return wire.Erc3009Deposit(
            valid_after=authorization.valid_after,
            valid_before=authorization.valid_before,
            salt=salt,
            signature=signed.signature,
        )

    # ------------------------------------------------------------ a request that died

    def _adopt(self, row: ChannelRow) -> _Adopted:
        """The channel's last request never had its answer booked (its process died, or the answer was lost).

        Our lease on the row means that request's lease ran out. What the
        chain can tell is settled now: its deposit is posted if the token
        used the authorization, voided once unusable, and offered again when
        still valid; the row's balance is read from the escrow. Its charge
        is posted when the chain's ``totalClaimed`` proves it; otherwise it
        stays reserved for this request to re-present (the seller's answer
        then decides it).
        """
        cid = row.channel_id
        snapshot = self.escrow.snapshot(_cid(cid))
        resend, _ = self._resolve_deposits(cid)
        orphan = row.inflight_id
        ceiling = open_charge(self.books, orphan) if orphan is not None else None
        booked = booked_charges(self.books, cid)
        if ceiling is not None and orphan is not None and snapshot.total_claimed > booked:
            # The seller claimed more than we booked: the dead request was charged.
            post_charge(self.books, orphan, cid, min(snapshot.total_claimed - booked, ceiling))
            ceiling = None
        update_channel(
            self.books,
            cid,
            balance=snapshot.balance,
            total_claimed=snapshot.total_claimed,
            charged=max(row.charged, snapshot.total_claimed),
            inflight_id=None,
        )
        fresh = get_channel(self.books, cid)
        assert fresh is not None
        log.info("channel %s: resolved a request whose process died", cid)
        if ceiling is None:
            return _Adopted(fresh, None, 0, resend)
        return _Adopted(fresh, orphan, ceiling, resend)

    def _resolve_deposits(
        self, channel_id: str
    ) -> tuple[OpenDeposit | None, list[tuple[str, int]]]:
        """Post or void the channel's reserved deposits from the chain.

        Returns the first one still usable (unused, inside its window, signed
        with a derived salt) and what was done: ``(deposit_posted |
        deposit_voided, amount)``.
        """
        token = Stablecoin(self.payer.chain, self.payer.asset)
        now = self.payer.chain.timestamp()
        usable: OpenDeposit | None = None
        done: list[tuple[str, int]] = []
        for deposit in open_deposits(self.books, channel_id):
            if deposit.nonce is None:
                continue  # made before deposits kept their nonce: reconciliation decides
            outcome = token.authorization_outcome(self.payer.address, deposit.nonce)
            if outcome.state == "used":
                post_deposit(
                    self.books,
                    deposit.deposit_id,
                    tx_hash=outcome.tx_hash,
                    block_number=outcome.block_number,
                    payer=self.payer.address,
                    collector=self.collector,
                )
                done.append(("deposit_posted", deposit.amount))
            elif outcome.state == "canceled" or (
                outcome.state == "unused"
                and deposit.valid_before is not None
                and deposit.valid_before <= now
            ):
                void_pending(self.books, deposit.deposit_id)
                done.append(("deposit_voided", deposit.amount))
            elif (
                outcome.state == "unused"
                and usable is None
                and deposit.valid_after is not None
                and deposit.valid_before is not None
                and deposit.nonce
                == "0x" + deposit_nonce(_cid(channel_id), _deposit_salt(deposit.deposit_id)).hex()
            ):
                usable = deposit
        return usable, done

    # ------------------------------------------------------------ after sending

    def finish(self, prepared: ChannelPrepared, response: httpx.Response) -> PaymentOutcome:
        """Check and book the seller's answer to a voucher; see the module doc."""
        # The seller answered; nothing of its answer is booked yet.
        if prepared.deposit_id is not None:
            crash_point("agent.channel_after_deposit_sent")
        else:
            crash_point("agent.channel_after_voucher_sent")
        data = _response_data(response)
        if response.is_success and data is not None and data.get("success") is True:
            return self._charged(prepared, data)
        if response.status_code == 402:
            challenge = read_challenge(response)
            error = challenge.error if isinstance(challenge, Challenge) else None
            seller_reason = (data or {}).get("errorReason") or error or "payment_not_accepted"
            void_pending(self.books, prepared.payment_id)
            balance = self._settle_deposit_from_chain(prepared)
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
        detail = f"the seller answered {response.status_code}"
        return prepared.outcome("possible_spend", "settlement_unknown", message=detail)

    def after_error(self, prepared: ChannelPrepared, error: BaseException) -> PaymentOutcome:
        release(self.books, prepared.lease)
        detail = f"{type(error).__name__} after the voucher was sent"
        return prepared.outcome("possible_spend", "timeout", message=detail)

    def _charged(self, prepared: ChannelPrepared, data: dict[str, Any]) -> PaymentOutcome:
        extra = wire.parse_response_extra(data.get("extra") or {})
        violation: str | None = None
        charged = prepared.ceiling
        if isinstance(extra, wire.WireRefusal):
            violation = "channel_response_malformed"
        else:
            if extra.charged_amount is not None:
                charged = extra.charged_amount
            state = extra.channel_state
            if charged > prepared.ceiling:
                violation = "charge_above_ceiling"
            elif state is not None and "0x" + state.channel_id.hex() != prepared.channel_id:
                violation = "channel_id_mismatch"
            elif (
                state is not None
                and state.charged_cumulative_amount is not None
                and state.charged_cumulative_amount != prepared.charged_before + charged
            ):
                violation = "cumulative_inconsistent"
        tx_hash = data.get("transaction") if isinstance(data.get("transaction"), str) else None
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
        started = self.stop(prepared.channel_id, violation)
        message = f"the seller failed the channel check ({violation}); {started}"
        log.warning("channel %s: %s", prepared.channel_id, message)
        return prepared.outcome("paid", violation, message=message, amount=booked)

    def _settle_deposit_from_chain(self, prepared: ChannelPrepared) -> int:
        """A refused request's deposit: posted if the chain shows it, voided if not. Returns the balance."""
        if prepared.deposit_id is None:
            return prepared.balance_before
        try:
            balance, _ = self.escrow.channel(_cid(prepared.channel_id))
        except ChainError:
            return prepared.balance_before  # left pending: its hold expires, reconciliation decides
        if balance >= prepared.balance_before + prepared.deposit_amount:
            tx = self._last_event_tx("Deposited", prepared.channel_id)
            post_deposit(
                self.books,
                prepared.deposit_id,
                tx_hash=tx,
                block_number=None,
                payer=self.payer.address,
                collector=self.collector,
            )
            return balance
        void_pending(self.books, prepared.deposit_id)
        return prepared.balance_before

    def _last_event_tx(self, name: str, channel_id: str) -> str | None:
        logs = self.payer.chain.logs(
            self.settlement, [ESCROW_EVENT_TOPICS[name], _cid(channel_id)], 0
        )
        return logs[-1].tx_hash if logs else None

    # ------------------------------------------------------------ corrective 402

    def _resync(self, prepared: ChannelPrepared, challenge: Challenge) -> bool:
        """Adopt the seller's channel state only as far as the agent can verify it owes it."""
        offer = next((o for o in challenge.offers if o.requirements.scheme == wire.SCHEME), None)
        extra = wire.parse_extra(offer.raw.get("extra")) if offer is not None else None
        if not isinstance(extra, wire.BatchExtra) or extra.channel_state is None:
            return False
        state, voucher_state = extra.channel_state, extra.voucher_state
        if "0x" + state.channel_id.hex() != prepared.channel_id:
            return False
        try:
            balance, claimed = self.escrow.channel(_cid(prepared.channel_id))
        except ChainError:
            return False
        row = get_channel(self.books, prepared.channel_id)
        if row is None:
            return False
        charged = claimed  # what the chain proves
        signed_max = max(row.signed_max, claimed)
        seller = state.charged_cumulative_amount
        if seller is not None and voucher_state is not None:
            signed = voucher_state.signed_max_claimable
            digest = self.domain.voucher_digest(_cid(prepared.channel_id), signed)
            signer = recover_digest(digest, voucher_state.signature)  # None when refused
            # Our own signature over ``signed`` is the proof we committed to
            # it, even when our records of it were lost (a cold start).
            if signer == self.payer.address and claimed <= seller <= signed:
                charged = seller
                signed_max = max(signed_max, signed)
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

    # ------------------------------------------------------------ stopping, withdrawing

    def stop(self, channel_id: str, reason: str) -> str:
        """Never sign on this channel again and start the timed withdrawal; says what happened."""
        update_channel(self.books, channel_id, status="stopped", reason=reason)
        started = self.withdraw(channel_id)
        return "withdrawal started" if started == "ok" else f"withdrawal not started: {started}"

    def withdraw(self, channel_id: str) -> str:
        """``initiateWithdraw`` for everything unclaimed: ``"ok"`` or a snake_case reason."""
        row = get_channel(self.books, channel_id)
        if row is None:
            return "channel_not_found"
        try:
            balance, claimed = self.escrow.channel(_cid(channel_id))
        except ChainError:
            return "chain_unavailable"
        amount = balance - claimed
        if amount <= 0:
            return "nothing_to_withdraw"
        result = self.escrow.initiate_withdraw(
            row.config, amount, sender=cast(TxSigner, self.payer.signer)
        )
        if not result.ok:
            return result.reason or "transaction_failed"
        crash_point("agent.channel_after_withdraw_sent")
        after = self.payer.chain.timestamp() + row.config.withdraw_delay_s
        update_channel(
            self.books,
            channel_id,
            status="withdrawing",
            withdraw_after=after,
            reason=row.reason or "withdraw",
        )
        return "ok"

    def finalize(self, channel_id: str) -> tuple[str, int]:
        """``finalizeWithdraw`` after the delay: (``"ok"`` or a reason, the amount returned)."""
        row = get_channel(self.books, channel_id)
        if row is None:
            return "channel_not_found", 0
        result = self.escrow.finalize_withdraw(row.config, sender=cast(TxSigner, self.payer.signer))
        if not result.ok or result.tx_hash is None:
            return result.reason or "transaction_failed", 0
        crash_point("agent.channel_after_finalize_sent")
        amount = sum(
            int(abi_decode(["uint128"], entry.data)[0])
            for entry in result.logs
            if entry.topics and entry.topics[0] == ESCROW_EVENT_TOPICS["WithdrawFinalized"]
        )
        if amount:
            book_refund(
                self.books,
                channel_id=channel_id,
                amount=amount,
                tx_hash=result.tx_hash,
                block_number=result.block_number,
                escrow=self.settlement,
                wallet=self.payer.address,
            )
        balance, claimed = self.escrow.channel(_cid(channel_id))
        update_channel(
            self.books,
            channel_id,
            status="closed",
            balance=balance,
            total_claimed=claimed,
            charged=max(row.charged, claimed),
            withdraw_after=None,
        )
        return "ok", amount


@dataclass(frozen=True, slots=True)
class ChannelBreak:
    """A disagreement between the escrow's events and the agent's books, for one channel."""

    channel_id: str
    kind: str  # deposits_differ | returns_differ | claimed_above_charged
    chain_amount: int
    books_amount: int


@dataclass(frozen=True, slots=True)
class ChannelResolution:
    """What :func:`resolve_channels` did on one channel (``action``: a short snake_case word)."""

    channel_id: str
    action: str  # deposit_posted | deposit_voided | refund_booked | withdrawing | closed | charge_posted | charge_voided | charge_unconfirmed
    amount: int = 0


def resolve_channels(payer: Payer, *, from_block: int = 0) -> list[ChannelResolution]:
    """Settle from the chain what a dead process left on the agent's channels (not leased now).

    * a reserved deposit: posted when the token used its authorization,
      voided when it was cancelled or its window closed unused (left while
      it could still land);
    * a ``Refunded`` or ``WithdrawFinalized`` event the books lack (the
      process died after the transaction): booked, with the id ``finalize``
      would have used, so it is never booked twice;
    * a timed withdrawal pending on chain: the channel is marked
      ``withdrawing`` (no voucher is signed on it again); finalized: ``closed``;
    * a charge left in flight: posted when the chain's ``totalClaimed``
      proves it, voided once the channel is closed with nothing more
      claimable; otherwise ``charge_unconfirmed`` (only the seller knows:
      the next request on the channel settles it).

    The row's balance and ``totalClaimed`` are refreshed from the escrow.
    """
    channels = ChannelPayer(payer)
    books = payer.books
    out: list[ChannelResolution] = []
    now_ns = time.time_ns()
    for row in list_channels(books):
        if row.lease_until_ns > now_ns:
            continue  # a live request holds it
        cid = row.channel_id
        _, settled = channels._resolve_deposits(cid)
        out.extend(ChannelResolution(cid, action, amount) for action, amount in settled)
        for name in ("Refunded", "WithdrawFinalized"):
            for entry in payer.chain.logs(
                channels.settlement, [ESCROW_EVENT_TOPICS[name], _cid(cid)], from_block
            ):
                amount = int(abi_decode(["uint128"], entry.data[:32])[0])
                if amount and entry.tx_hash:
                    result = book_refund(
                        books,
                        channel_id=cid,
                        amount=amount,
                        tx_hash=entry.tx_hash,
                        block_number=entry.block_number,
                        escrow=channels.settlement,
                        wallet=payer.address,
                    )
                    if result == "ok":
                        out.append(ChannelResolution(cid, "refund_booked", amount))
        snapshot = channels.escrow.snapshot(_cid(cid))
        values: dict[str, Any] = {
            "balance": snapshot.balance,
            "total_claimed": snapshot.total_claimed,
            "charged": max(row.charged, snapshot.total_claimed),
        }
        if snapshot.withdraw_requested_at and row.status in ("open", "stopped"):
            values.update(
                status="withdrawing",
                withdraw_after=snapshot.withdraw_requested_at + row.config.withdraw_delay_s,
                reason=row.reason or "withdraw",
            )
            out.append(ChannelResolution(cid, "withdrawing", snapshot.withdraw_amount))
        finalized = payer.chain.logs(
            channels.settlement, [ESCROW_EVENT_TOPICS["WithdrawFinalized"], _cid(cid)], from_block
        )
        if not snapshot.withdraw_requested_at and row.status == "withdrawing" and finalized:
            values.update(status="closed", withdraw_after=None)
            out.append(ChannelResolution(cid, "closed"))
        closed = values.get("status", row.status) == "closed"
        if row.inflight_id is not None:
            ceiling = open_charge(books, row.inflight_id)
            booked = booked_charges(books, cid)
            if ceiling is None:
                values["inflight_id"] = None
            elif snapshot.total_claimed > booked:
                amount = min(snapshot.total_claimed - booked, ceiling)
                post_charge(books, row.inflight_id, cid, amount)
                values["inflight_id"] = None
                out.append(ChannelResolution(cid, "charge_posted", amount))
            elif closed and snapshot.balance <= snapshot.total_claimed:
                void_pending(books, row.inflight_id)
                values["inflight_id"] = None
                out.append(ChannelResolution(cid, "charge_voided", ceiling))
            else:
                out.append(ChannelResolution(cid, "charge_unconfirmed", ceiling))
        update_channel(books, cid, **values)
    return out


def reconcile_channels(
    payer: Payer, *, from_block: int = 0, resolve: bool = False
) -> list[ChannelBreak]:
    """Match the escrow's ``Deposited``, ``Refunded``, ``WithdrawFinalized`` and ``Claimed`` events to the books.

    Deposits must equal the posted ``CHANNEL_DEPOSIT`` transfers, money back
    the ``CHANNEL_REFUND`` ones, and the chain's ``totalClaimed`` must not be
    above what the books charged (the seller may claim less, never more).
    With ``resolve``, :func:`resolve_channels` runs first.
    """
    from farthing.agents.channels.books import booked_sums

    if resolve:
        resolve_channels(payer, from_block=from_block)
    channels = ChannelPayer(payer)
    breaks: list[ChannelBreak] = []
    for row in list_channels(payer.books):
        cid = _cid(row.channel_id)

        def total(name: str, cid: bytes = cid) -> int:
            logs = payer.chain.logs(
                channels.settlement, [ESCROW_EVENT_TOPICS[name], cid], from_block
            )
            return sum(int(abi_decode(["uint128"], entry.data[:32])[0]) for entry in logs)

        deposited, returned, charged = booked_sums(payer.books, row.channel_id)
        on_chain = total("Deposited")
        back = total("Refunded") + total("WithdrawFinalized")
        _, claimed = channels.escrow.channel(cid)
        if on_chain != deposited:
            breaks.append(ChannelBreak(row.channel_id, "deposits_differ", on_chain, deposited))
        if back != returned:
            breaks.append(ChannelBreak(row.channel_id, "returns_differ", back, returned))
        if claimed > charged:
            breaks.append(ChannelBreak(row.channel_id, "claimed_above_charged", claimed, charged))
    return breaks


def _response_data(response: httpx.Response) -> dict[str, Any] | None:
    header = response.headers.get(PAYMENT_RESPONSE_HEADER)
    if header is None or len(header) > 64 * 1024:
        return None
    try:
        data = unb64_json(header)
    except (ValueError, UnicodeDecodeError, RecursionError):  # binascii.Error is a ValueError
        return None
    return data if isinstance(data, dict) else None
