"""The ``Payer``: decides, reserves, signs and books one purchase. Blocking; no HTTP here.

The paying client (``farthing.agents.client``) calls it at two points:

1. :meth:`Payer.prepare`, given a seller's 402, in this order: read the terms,
   choose an offer (known network and asset, cheapest), check ``max_price``,
   the host and payee lists, look for an earlier, still open payment for the
   same purchase (its authorization is re-signed, byte for byte, never a
   second one), ask a person if the amount is above the approval threshold
   (0.10 of the token for an agent nobody configured; not for a payment the
   budgets would refuse anyway), make the payment id and derive the nonce
   from it, **reserve** the amount against every budget (committed), check the
   wallet's balance (voiding the reservation if it is short), and only then
   sign. Anything that says no returns a ``not_paid`` outcome and leaves
   nothing reserved.
2. :meth:`Payer.finish`, given the seller's answer to the signed request: a
   ``PAYMENT-RESPONSE`` success posts the reservation with its transaction; a
   402 refusal voids it, unless the chain says the authorization was used
   anyway (then it is posted); anything else leaves it pending as *possible
   spend* for :mod:`farthing.agents.resolve` or ``farthing ledger reconcile``.

The ``exact`` payment itself (its EIP-3009 terms and the payment header) is
built by the scheme's client part, ``farthing.paywall.schemes.exact.client``;
a ``batch-settlement`` offer goes to ``farthing.agents.channels.payer``, an
``upto`` one (the same checks judging its ceiling) to ``farthing.agents.upto``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import urlsplit

import httpx

from farthing.agents.approvals import Approval, request_approval, wait_for_decision
from farthing.agents.books import AgentBooks
from farthing.agents.challenge import (
    Challenge,
    MalformedChallenge,
    Offer,
    SellerAnswer,
    answer_of,
    settlement_from,
)
from farthing.agents.channels.payer import ChannelPayer
from farthing.agents.channels.prepared import ChannelPrepared
from farthing.agents.channels.store import list_channels
from farthing.agents.outcome import OutcomeStatus, PaymentOutcome
from farthing.agents.policy import SpendPolicy, check_terms, needs_approval
from farthing.agents.reservations import (
    BookedPayment,
    PaymentIntent,
    find_open_payment,
    release,
    reserve,
    settle,
)
from farthing.agents.selection import choose_offer
from farthing.agents.settings import AgentSettings
from farthing.agents.sign_in import sign_in_header
from farthing.agents.upto import UptoPayer, UptoPrepared
from farthing.faults import crash_point
from farthing.ledger import format_transfer_id, new_id
from farthing.paywall.schemes.batch_settlement.wire import SCHEME as CHANNEL_SCHEME
from farthing.paywall.schemes.exact.client import (
    authorization_again,
    authorization_for,
    payment_header,
)
from farthing.paywall.schemes.upto.types import SCHEME as UPTO_SCHEME
from farthing.wallet.chain import Chain
from farthing.wallet.eip3009 import SignedAuthorization, TokenDomain, sign_authorization
from farthing.wallet.errors import ChainError
from farthing.wallet.money import Asset
from farthing.wallet.signer import Signer
from farthing.wallet.token import Stablecoin

__all__ = ["AnyPrepared", "Intent", "Payer", "Prepared", "derive_nonce"]

log = logging.getLogger("farthing.agents")

# A re-sent authorization needs this long left in its window to be worth
# sending; the paywall refuses windows closer than 10 s to their end.
_REUSE_MARGIN_S: Final = 20
# Our authorizations are minutes old when we ask about them; their logs are recent.
_LOG_LOOKBACK_BLOCKS: Final = 5_000


def derive_nonce(payment_id: int, payer: str) -> bytes:
    """The EIP-3009 nonce of a payment: a function of its id, so a retry signs the same one."""
    return hashlib.sha256(
        b"farthing.agents.nonce:" + payment_id.to_bytes(16, "big") + bytes.fromhex(payer[2:])
    ).digest()


@dataclass(frozen=True, slots=True)
class Intent:
    """Why this purchase is made and the most it may cost: set by the caller, never by the seller."""

    task_id: str | None = None
    purpose: str | None = None
    max_price: int | None = None  # atomic units; None: only the policy limits
    # How many buys from this seller the caller expects; at least
    # ``AgentSettings.channel_buys_min`` prefers a batch-settlement channel.
    expected_buys: int | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A reserved and signed payment, ready to send."""

    url: str
    offer: Offer
    intent: Intent
    payment_id: int
    signed: SignedAuthorization
    header: tuple[str, str]  # (name, value): PAYMENT-SIGNATURE, or X-PAYMENT for v1
    asset: Asset
    approval_id: int | None = None
    reused: bool = False

    def outcome(
        self,
        status: OutcomeStatus,
        reason: str | None = None,
        *,
        message: str | None = None,
        tx_hash: str | None = None,
    ) -> PaymentOutcome:
        return PaymentOutcome(
            status=status,
            url=self.url,
            reason=reason,
            message=message,
            amount=self.offer.amount,
            asset=self.asset,
            pay_to=self.offer.requirements.pay_to,
            payment_id=self.payment_id,
            tx_hash=tx_hash,
            task_id=self.intent.task_id,
            purpose=self.intent.purpose,
            approval_id=self.approval_id,
        )


# What prepare signs: an exact authorization, a channel voucher, or an upto permit.
AnyPrepared = Prepared | ChannelPrepared | UptoPrepared


class Payer:
    """One wallet (a signer for one token on one chain) paying under one agent's books."""

    def __init__(
        self,
        *,
        signer: Signer,
        chain: Chain,
        asset: Asset,
        books: AgentBooks,
        settings: AgentSettings | None = None,
        on_approval: Callable[[Approval, int], None] | None = None,
    ) -> None:
        if books.asset != asset:
            raise ValueError("the books and the wallet must use the same asset")
        self.signer = signer
        self.chain = chain
        self.asset = asset
        self.books = books
        self.settings = settings or AgentSettings()
        self.domain = TokenDomain.for_asset(asset)
        self._token = Stablecoin(chain, asset)
        self.channels = ChannelPayer(self)
        self.upto = UptoPayer(self)
        # Told of each payment that starts waiting for a person (the request
        # and how many seconds it will wait), so a command can say so.
        self.on_approval = on_approval

    def __repr__(self) -> str:
        return f"Payer({self.address} paying {self.asset.symbol} on {self.asset.network})"

    @property
    def address(self) -> str:
        return self.signer.address

    def balance(self) -> int:
        """The wallet's token balance on the chain, in atomic units."""
        return self._token.balance_of(self.address)

    def auth(
        self,
        *,
        task_id: str | None = None,
        purpose: str | None = None,
        max_price: int | None = None,
        expected_buys: int | None = None,
    ) -> httpx.Auth:
        """An ``httpx.Auth`` that pays 402s for one purchase intent (see ``farthing.agents.client``)."""
        from farthing.agents.client import PaymentAuth

        intent = Intent(
            task_id=task_id, purpose=purpose, max_price=max_price, expected_buys=expected_buys
        )
        return PaymentAuth(self, intent)

    def prefers_channel(self, challenge: Challenge, intent: Intent) -> bool:
        """The rule for repeated buys: a channel when one to this payee is open, or many buys are expected."""
        expected = intent.expected_buys
        if expected is not None and expected >= self.settings.channel_buys_min:
            return True
        payees = {
            o.requirements.pay_to.lower()
            for o in challenge.offers
            if o.requirements.scheme == CHANNEL_SCHEME
        }
        if not payees:
            return False
        return any(
            row.status == "open" and row.config.receiver.lower() in payees and row.balance > 0
            for row in list_channels(self.books)
        )

    def sign_in_header(self, url: str, response: httpx.Response) -> tuple[str, str] | None:
        """A sign-in that answers this 402 if our books own ``url`` (``farthing.agents.sign_in``)."""
        return sign_in_header(self.signer, self.books, self.asset.network, url, response)

    # ------------------------------------------------------------ before sending

    def prepare(
        self, url: str, challenge: Challenge | MalformedChallenge, intent: Intent
    ) -> AnyPrepared | PaymentOutcome:
        """Decide about a 402 and, if every check passes, reserve and sign; see the module doc."""
        if isinstance(challenge, MalformedChallenge):
            return _not_paid(url, intent, challenge.reason, challenge.message)
        policy = self.books.policy()
        # Channels book charges without a token (they are not token
        # transfers), and an approval per voucher would defeat them: a
        # channel is used only when no voucher can reach the approval
        # threshold. Its deposit stays the agent's, in escrow; only vouchers pay.
        allow_channel = policy.asset_allowlist is None and (
            policy.approval_above is None
            or all(
                o.amount <= policy.approval_above
                for o in challenge.offers
                if o.requirements.scheme == CHANNEL_SCHEME
            )
        )
        upto_blocker = self.upto.blocker(challenge)
        chosen = choose_offer(
            challenge,
            self.asset,
            prefer_channel=allow_channel and self.prefers_channel(challenge, intent),
            allow_channel=allow_channel,
            allow_upto=upto_blocker is None,
        )
        if chosen == "unsupported_scheme" and upto_blocker is not None:
            chosen = upto_blocker  # upto was offered, and why it cannot be paid says more
        if isinstance(chosen, str):
            offered = ", ".join(
                f"{o.requirements.amount} of {o.requirements.asset} on {o.requirements.network}"
                for o in challenge.offers[:3]
            )
            return _not_paid(url, intent, chosen, f"offered: {offered}" if offered else None)
        requirements = chosen.requirements
        terms = _Terms(requirements.amount, self.asset, requirements.pay_to)
        if intent.max_price is not None and requirements.amount > intent.max_price:
            return _not_paid(
                url,
                intent,
                "price_above_max",
                f"the price is {self.asset.format(requirements.amount)}, the most allowed "
                f"{self.asset.format(intent.max_price)}",
                terms,
            )
        host = urlsplit(url).hostname or ""
        refusal = check_terms(policy, host=host, pay_to=requirements.pay_to)
        if refusal is not None:
            detail = f"host {host}, payee {requirements.pay_to}"
            return _not_paid(url, intent, refusal, detail, terms)
        if requirements.scheme == CHANNEL_SCHEME:
            return self.channels.prepare(url, challenge, chosen, intent)

        upto = requirements.scheme == UPTO_SCHEME
        if upto and (before := self.upto.open_payment(url, chosen, intent)) is not None:
            return self.upto.reuse(url, challenge, chosen, intent, before)
        earlier = None if upto else find_open_payment(
            self.books,
            task_id=intent.task_id,
            resource=url,
            pay_to=requirements.pay_to,
            amount=requirements.amount,
        )  # fmt: skip
        if earlier is not None:
            return self._reuse(url, chosen, challenge, intent, earlier, terms)

        approval_id = None
        if needs_approval(policy, requirements.amount):
            # Nobody is asked about a payment the budgets would refuse anyway.
            short = self._short_of(policy, requirements.amount, intent)
            if short is not None:
                return _not_paid(url, intent, short, "checked before asking a person", terms)
            approval = request_approval(
                self.books.database,
                agent_id=self.books.agent_id,
                asset=self.asset,
                amount=requirements.amount,
                pay_to=requirements.pay_to,
                resource=url,
                task_id=intent.task_id,
                purpose=intent.purpose,
            )
            log.info(
                "payment of %s for %s waits for approval %d",
                self.asset.format(requirements.amount),
                url,
                approval.id,
            )
            if self.on_approval is not None:
                self.on_approval(approval, policy.approval_timeout_s)
            decided = wait_for_decision(
                self.books.database,
                approval.id,
                timeout_s=policy.approval_timeout_s,
                poll_s=self.settings.approval_poll_s,
            )
            approval_id = approval.id
            terms = replace(terms, approval_id=approval_id)
            if decided.status != "approved":
                reason = "approval_denied" if decided.status == "denied" else "approval_timeout"
                return _not_paid(url, intent, reason, decided.note, terms)

        if upto:
            return self.upto.prepare(url, challenge, chosen, intent, approval_id=approval_id)
        payment_id = new_id()
        authorization = authorization_for(
            requirements,
            payer=self.address,
            nonce=derive_nonce(payment_id, self.address),
            now=self.chain.timestamp(),  # the chain's clock: the memory chain runs ahead
            valid_for_s=self.settings.valid_for_s,
        )
        reserved = reserve(
            self.books,
            PaymentIntent(
                payment_id=payment_id,
                payer=self.address,
                pay_to=requirements.pay_to,
                amount=requirements.amount,
                resource=url,
                nonce=authorization.nonce,
                valid_after=authorization.valid_after,
                valid_before=authorization.valid_before,
                task_id=intent.task_id,
                purpose=intent.purpose,
                fiat=challenge.fiat,
            ),
        )
        if reserved not in ("ok", "exists"):
            return _not_paid(url, intent, reserved, None, terms)
        crash_point("agent.after_reserve")
        # The budgets said yes; the chain must agree the money is there. A
        # seller would refuse an authorization the wallet cannot cover.
        try:
            balance = self.balance()
        except ChainError as exc:
            # Nothing is signed yet: a chain that does not answer must not
            # hold the budget until the reservation expires.
            if reserved == "ok":
                release(self.books, payment_id)
            return _not_paid(url, intent, "chain_unavailable", str(exc), terms)
        if balance < requirements.amount:
            release(self.books, payment_id)
            detail = f"the wallet holds {self.asset.format(balance)}"
            return _not_paid(url, intent, "insufficient_balance", detail, terms)
        # Reserved and committed: only now is anything signed.
        try:
            signed = sign_authorization(self.signer, authorization, self.domain)
        except BaseException:
            release(self.books, payment_id)  # nothing signed, nothing sent: free the budget
            raise
        crash_point("agent.after_sign")
        return Prepared(
            url=url,
            offer=chosen,
            intent=intent,
            payment_id=payment_id,
            signed=signed,
            header=self._header(chosen, challenge, signed, url),
            asset=self.asset,
            approval_id=approval_id,
        )

    def _short_of(self, policy: SpendPolicy, amount: int, intent: Intent) -> str | None:
        """The budget ``amount`` would pass now, or None; the reservation checks them all again."""
        if policy.payment_cap is not None and amount > policy.payment_cap:
            return "exceeds_payment_cap"
        status = self.books.status(intent.task_id)
        if amount > status.available:
            return "exceeds_budget"
        if status.daily_limit is not None and amount > status.daily_limit - status.daily_used:
            return "exceeds_daily_limit"
        if status.task_remaining is not None and amount > status.task_remaining:
            return "exceeds_task_budget"
        if status.total_budget is not None and amount > (
            status.total_budget - status.spent - status.reserved
        ):
            return "exceeds_total_budget"
        return None

    def _reuse(
        self,
        url: str,
        offer: Offer,
        challenge: Challenge,
        intent: Intent,
        earlier: BookedPayment,
        terms: _Terms,
    ) -> Prepared | PaymentOutcome:
        nonce, valid_after, valid_before = earlier.nonce, earlier.valid_after, earlier.valid_before
        if (
            nonce is None
            or valid_after is None
            or valid_before is None
            or valid_before - self.chain.timestamp() <= _REUSE_MARGIN_S
        ):
            return _not_paid(
                url,
                intent,
                "possible_spend_unresolved",
                f"payment {format_transfer_id(earlier.payment_id)} is still open; "
                "resolve it from the chain first",
                replace(terms, payment_id=earlier.payment_id),
            )
        authorization = authorization_again(
            offer.requirements,
            payer=self.address,
            nonce=bytes.fromhex(nonce[2:]),
            valid_after=valid_after,
            valid_before=valid_before,
        )
        # Deterministic (RFC 6979) signing: the same authorization, the same bytes.
        signed = sign_authorization(self.signer, authorization, self.domain)
        return Prepared(
            url=url,
            offer=offer,
            intent=intent,
            payment_id=earlier.payment_id,
            signed=signed,
            header=self._header(offer, challenge, signed, url),
            asset=self.asset,
            reused=True,
        )

    def _header(
        self, offer: Offer, challenge: Challenge, signed: SignedAuthorization, url: str
    ) -> tuple[str, str]:
        return payment_header(
            signed,
            offer.requirements,
            x402_version=offer.x402_version,
            wire_network=offer.wire_network,
            accepted=offer.raw,
            resource=challenge.resource,
            url=url,
        )

    # ------------------------------------------------------------ after sending

    def finish(self, prepared: AnyPrepared, response: httpx.Response) -> PaymentOutcome:
        """Book what the seller's HTTP answer to a signed payment means; see the module doc."""
        return self.conclude(prepared, answer_of(response))

    def conclude(self, prepared: AnyPrepared, answer: SellerAnswer) -> PaymentOutcome:
        """Book the seller's answer to a signed payment, from any transport; see the module doc."""
        if isinstance(prepared, ChannelPrepared):
            return self.channels.conclude(prepared, answer)
        if isinstance(prepared, UptoPrepared):
            return self.upto.conclude(prepared, answer)
        settlement = settlement_from(answer.settlement)
        if answer.delivered and settlement is not None and settlement.success:
            if settlement.network not in ("", self.asset.network) or (
                settlement.payer is not None and settlement.payer.lower() != self.address.lower()
            ):
                detail = "the receipt names another payment"
                return self._unknown(prepared, "settlement_unknown", detail)
            return self._post(prepared, settlement.transaction or None)
        if answer.refused:
            challenge = answer.challenge
            seller_reason = (
                (settlement.reason if settlement is not None else None)
                or (challenge.error if isinstance(challenge, Challenge) else None)
                or "payment_not_accepted"
            )
            message = settlement.message if settlement is not None else None
            state, tx_hash = self._chain_state(prepared)
            if state == "used":  # refused, yet the money moved: book it
                return self._post(prepared, tx_hash, message=f"the seller said {seller_reason}")
            if state not in ("unused", "canceled"):
                return prepared.outcome("possible_spend", seller_reason, message=message)
            result = release(self.books, prepared.payment_id)
            if result not in ("ok", "exists"):
                log.warning("voiding payment %d failed: %s", prepared.payment_id, result)
            return prepared.outcome("refused", seller_reason, message=message)
        detail = f"the seller answered {answer.status}"
        if settlement is not None and settlement.reason:
            detail += f" ({settlement.reason})"
        if answer.delivered:  # the content came, with a receipt we cannot match
            return self._unknown(prepared, "settlement_unknown", detail)
        return self._undelivered(prepared, "settlement_unknown", detail)

    def after_error(self, prepared: AnyPrepared, error: BaseException) -> PaymentOutcome:
        """The outcome when the signed request got no answer: possible spend; see :meth:`_undelivered`."""
        if isinstance(prepared, ChannelPrepared):
            return self.channels.after_error(prepared, error)
        if isinstance(prepared, UptoPrepared):
            return self.upto.after_error(prepared, error)
        detail = f"{type(error).__name__} after the payment was sent"
        return self._undelivered(prepared, "timeout", detail)

    def _undelivered(self, prepared: Prepared, reason: str, detail: str) -> PaymentOutcome:
        """No content came back: possible spend, and the reservation stays open.

        It stays open even when the chain shows the authorization used: a
        retry of the same purchase re-presents this same authorization (see
        :meth:`prepare`), so the seller can deliver what was paid for instead
        of being paid a second time. If no retry comes, ``farthing agent
        resolve`` posts it from the chain.
        """
        state, tx_hash = self._chain_state(prepared)
        if state == "used":
            return prepared.outcome(
                "possible_spend", "content_not_delivered", message=detail, tx_hash=tx_hash
            )
        return prepared.outcome("possible_spend", reason, message=detail)

    def _unknown(self, prepared: Prepared, reason: str, detail: str) -> PaymentOutcome:
        state, tx_hash = self._chain_state(prepared)
        if state == "used":
            return self._post(prepared, tx_hash, message=detail)
        return prepared.outcome("possible_spend", reason, message=detail)

    def _post(
        self, prepared: Prepared, tx_hash: str | None, *, message: str | None = None
    ) -> PaymentOutcome:
        result = settle(self.books, prepared.payment_id, tx_hash=tx_hash)
        if result not in ("ok", "exists"):
            # The money moved but the books could not say so yet (for example
            # the reservation already expired): reconciliation books it.
            log.warning("posting payment %d failed: %s", prepared.payment_id, result)
            message = f"paid; booking left to reconciliation ({result})"
        return prepared.outcome("paid", None, tx_hash=tx_hash, message=message)

    def _chain_state(self, prepared: Prepared) -> tuple[str, str | None]:
        """What the chain says of this authorization now: used (and where), unused, canceled, or unknown."""
        authorization = prepared.signed.authorization
        try:
            head = self.chain.block_number()
            outcome = self._token.authorization_outcome(
                self.address, authorization.nonce, from_block=max(0, head - _LOG_LOOKBACK_BLOCKS)
            )
        except ChainError as exc:  # the chain is down: leave the question to reconciliation
            log.warning("cannot read the authorization's state: %s", exc)
            return "unknown", None
        return outcome.state, outcome.tx_hash


@dataclass(frozen=True, slots=True)
class _Terms:
    """What a refusal still reports about the offer it refused."""

    amount: int
    asset: Asset
    pay_to: str
    approval_id: int | None = None
    payment_id: int | None = None


def _not_paid(
    url: str, intent: Intent, reason: str, message: str | None, terms: _Terms | None = None
) -> PaymentOutcome:
    return PaymentOutcome(
        status="not_paid",
        url=url,
        reason=reason,
        message=message,
        amount=terms.amount if terms else None,
        asset=terms.asset if terms else None,
        pay_to=terms.pay_to if terms else None,
        approval_id=terms.approval_id if terms else None,
        payment_id=terms.payment_id if terms else None,
        task_id=intent.task_id,
        purpose=intent.purpose,
    )
