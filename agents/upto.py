"""Paying through x402 ``upto``: reserve and sign a ceiling, book what the chain shows was settled.

:class:`UptoPayer` is the ``upto`` half of :class:`~farthing.agents.payer.Payer`
(which calls it when :func:`~farthing.agents.selection.choose_offer` picks an
``upto`` offer, after the same checks as ``exact``: ``max_price``, the host
and payee lists and, above the threshold, a person's approval, each judging
the **ceiling**, the most the seller may take).

:meth:`UptoPayer.prepare` reserves the ceiling against every budget
(``farthing.agents.ceilings.reserve_ceiling``, committed before anything is
signed), checks the wallet's balance and its Permit2 allowance, and signs
the Permit2 witness transfer for the ceiling
(``farthing.paywall.schemes.upto.permit``). Its Permit2 nonce is derived
from the payment id and its deadline is the reservation's ``valid_before``:
a retry of the same purchase re-signs the same permit (:meth:`UptoPayer.reuse`),
so at most one of them can ever be settled.

:meth:`UptoPayer.conclude` books the seller's answer. The
``PAYMENT-RESPONSE`` is a claim, not a fact: its transaction must be the
proxy's settlement of *this* permit (``farthing.agents.permits.settlement_in``),
and what is posted is what that transaction moved from the wallet, never
more than the reservation (the ledger refuses that too); the rest is
released. A claimed amount the chain does not show (above the ceiling,
say), a payee that is not the one signed, or a receipt naming another
transaction (a replay) is a **discrepancy**, recorded in the audit log
(``farthing.agents.ceilings.record_discrepancy``) and never posted on the
seller's word. A receipt that cannot be matched leaves the whole ceiling
reserved, as possible spend, for ``farthing.agents.ceilings.resolve_upto``.

A zero settlement (no transaction) leaves the ceiling reserved until the
permit's deadline: until then the seller still holds a permit it could
settle. A refusal (a 402 after the signed request) voids the reservation
when Permit2 says the nonce is unused, as ``exact`` does for its
authorization; a refused permit that was settled anyway is posted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from farthing.agents.ceilings import (
    Ceiling,
    OpenCeiling,
    find_open_ceiling,
    post_settled,
    record_discrepancy,
    reserve_ceiling,
)
from farthing.agents.challenge import Challenge, Offer, SellerAnswer, settlement_from
from farthing.agents.outcome import OutcomeStatus, PaymentOutcome
from farthing.agents.permits import (
    PermitSettlement,
    find_settlement,
    nonce_used,
    permit_nonce,
    settlement_in,
)
from farthing.agents.reservations import release
from farthing.faults import crash_point
from farthing.ledger import format_transfer_id, new_id
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.upto.client import sign_eip2612_permit, token_nonce
from farthing.paywall.schemes.upto.contract import ERC20_SIGNATURES, PERMIT2_ADDRESS
from farthing.paywall.schemes.upto.permit import UptoAuthorization, sign_authorization
from farthing.paywall.schemes.upto.types import EIP2612_KEY
from farthing.paywall.schemes.upto.types import SCHEME as SCHEME_UPTO
from farthing.paywall.schemes.upto.wire import Eip2612Permit, parse_requirements
from farthing.paywall.wire import PAYMENT_SIGNATURE_HEADER, X402_VERSION, b64_json
from farthing.wallet.abi_words import keccak
from farthing.wallet.address import checksum, is_address
from farthing.wallet.chain import Call
from farthing.wallet.errors import ChainError, SigningError

if TYPE_CHECKING:
    from farthing.agents.payer import Intent, Payer
    from farthing.wallet.money import Asset

__all__ = ["UptoPayer", "UptoPrepared"]

log = logging.getLogger("farthing.agents")

# The longest permit window signed, whatever the seller's maxTimeoutSeconds.
_WINDOW_S_MAX: Final = 3600
# A re-signed permit needs this long left before its deadline to be worth sending.
_REUSE_MARGIN_S: Final = 20
# Our permits are minutes old when we ask about them; their settlements are recent.
_LOG_LOOKBACK_BLOCKS: Final = 5_000
_ALLOWANCE: Final = keccak(ERC20_SIGNATURES["allowance"].encode())[:4]


@dataclass(frozen=True, slots=True)
class UptoPrepared:
    """A reserved and signed ``upto`` payment, ready to send: its ceiling is what is held."""

    url: str
    offer: Offer
    intent: Intent
    payment_id: int
    ceiling: int
    pay_to: str
    nonce: int  # Permit2's
    valid_after: int
    deadline: int
    header: tuple[str, str]  # (name, value): PAYMENT-SIGNATURE
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
        amount: int | None = None,
    ) -> PaymentOutcome:
        """The outcome; ``amount`` is the ceiling unless what was settled is known."""
        return PaymentOutcome(
            status=status,
            url=self.url,
            reason=reason,
            message=message,
            amount=self.ceiling if amount is None else amount,
            asset=self.asset,
            pay_to=self.pay_to,
            payment_id=self.payment_id,
            tx_hash=tx_hash,
            task_id=self.intent.task_id,
            purpose=self.intent.purpose,
            approval_id=self.approval_id,
        )


class UptoPayer:
    """The ``upto`` half of one wallet's :class:`~farthing.agents.payer.Payer`."""

    def __init__(self, payer: Payer) -> None:
        self.payer = payer

    # ------------------------------------------------------------ before sending

    def facilitator_of(self, offer: Offer) -> str | None:
        """The facilitator the offer names (``extra.facilitatorAddress``): the witness binds it."""
        extra = offer.raw.get("extra")
        found = extra.get("facilitatorAddress") if isinstance(extra, Mapping) else None
        return checksum(found) if isinstance(found, str) and is_address(found) else None

    def allowance(self) -> int:
        """What Permit2 may move from this wallet (``ChainError`` when the chain does not answer)."""
        payer = self.payer
        data = _ALLOWANCE + bytes(12) + bytes.fromhex(checksum(payer.address)[2:])
        data += bytes(12) + bytes.fromhex(PERMIT2_ADDRESS[2:])
        result = payer.chain.call(Call(payer.asset.address, data))
        if not result.ok or len(result.return_data) != 32:
            raise ChainError(f"{payer.asset.address} answered no allowance")
        return int.from_bytes(result.return_data, "big")

    def blocker(self, challenge: Challenge) -> str | None:
        """Why no ``upto`` offer here can be paid, or None (also when none is offered).

        Each must name its facilitator (the witness binds it), and Permit2
        must be allowed to spend the ceiling of one of them.
        """
        offers = [o for o in challenge.offers if o.requirements.scheme == SCHEME_UPTO]
        ceilings = [o.amount for o in offers if self.facilitator_of(o) is not None]
        if not offers:
            return None
        if not ceilings:
            return "malformed_payment_required"
        if _sponsored(challenge):
            return None  # the facilitator takes a gasless EIP-2612 approval with the payment
        try:
            allowance = self.allowance()
        except ChainError:
            return "chain_unavailable"
        return None if allowance >= min(ceilings) else "permit2_allowance_required"

    def open_payment(self, url: str, offer: Offer, intent: Intent) -> OpenCeiling | None:
        """An open ``upto`` reservation for the same purchase: its permit may already be out there."""
        return find_open_ceiling(
            self.payer.books,
            task_id=intent.task_id,
            resource=url,
            pay_to=offer.requirements.pay_to,
            ceiling=offer.amount,
        )

    def reuse(
        self, url: str, challenge: Challenge, offer: Offer, intent: Intent, earlier: OpenCeiling
    ) -> UptoPrepared | PaymentOutcome:
        """The earlier permit of this purchase, signed again (the same nonce, so it settles once)."""
        payer = self.payer
        facilitator = self.facilitator_of(offer)
        if earlier.deadline - payer.chain.timestamp() <= _REUSE_MARGIN_S or facilitator is None:
            detail = (
                f"payment {format_transfer_id(earlier.payment_id)} is still open; "
                "resolve it from the chain first"
            )
            return self._not_paid(url, intent, offer, "possible_spend_unresolved", detail, None)
        try:
            prepared = self._signed(
                url, challenge, offer, intent, earlier.payment_id, earlier.valid_after,
                earlier.deadline, facilitator, approval_id=None,
            )  # fmt: skip
        except (ChainError, SigningError) as exc:  # nothing new is held: the reservation stays
            return self._not_paid(url, intent, offer, "chain_unavailable", str(exc), None)
        return replace(prepared, reused=True)

    def prepare(
        self,
        url: str,
        challenge: Challenge,
        offer: Offer,
        intent: Intent,
        *,
        approval_id: int | None,
    ) -> UptoPrepared | PaymentOutcome:
        """Reserve the ceiling, check the wallet, sign; or a ``not_paid`` outcome, nothing held."""
        payer = self.payer
        facilitator = self.facilitator_of(offer)
        if facilitator is None:
            detail = "the upto offer names no facilitatorAddress"
            return self._not_paid(
                url, intent, offer, "malformed_payment_required", detail, approval_id
            )
        requirements = offer.requirements
        payment_id = new_id()
        now = payer.chain.timestamp()  # the chain's clock: the memory chain runs ahead
        valid_after = 0  # as the x402 SDK signs it: the deadline bounds the window
        # A metered answer is settled after it ends: the permit lives as long as the
        # seller's maxTimeoutSeconds asks (as the x402 SDK signs it), at most an hour.
        deadline = now + min(requirements.max_timeout_seconds, _WINDOW_S_MAX)
        reserved = reserve_ceiling(
            payer.books,
            Ceiling(
                payment_id=payment_id,
                payer=payer.address,
                pay_to=requirements.pay_to,
                ceiling=offer.amount,
                resource=url,
                valid_after=valid_after,
                deadline=deadline,
                task_id=intent.task_id,
                purpose=intent.purpose,
                fiat=challenge.fiat,
            ),
        )
        if reserved not in ("ok", "exists"):
            return self._not_paid(url, intent, offer, reserved, None, approval_id)
        crash_point("agent.after_reserve")
        refusal: tuple[str, str | None] | None = None
        try:
            balance, allowance = payer.balance(), self.allowance()
        except ChainError as exc:
            # Nothing is signed yet: a chain that does not answer must not hold the budget.
            refusal = ("chain_unavailable", str(exc))
        else:
            if balance < offer.amount:
                refusal = (
                    "insufficient_balance",
                    f"the wallet holds {payer.asset.format(balance)}",
                )
            elif allowance < offer.amount and not _sponsored(challenge):
                refusal = ("permit2_allowance_required", f"Permit2 may spend {allowance}")
        if refusal is not None:
            release(payer.books, payment_id)
            return self._not_paid(url, intent, offer, refusal[0], refusal[1], approval_id)
        try:
            prepared = self._signed(
                url, challenge, offer, intent, payment_id, valid_after, deadline, facilitator,
                approval_id=approval_id,
            )  # fmt: skip
        except (ChainError, SigningError) as exc:  # the token's EIP-2612 nonce could not be read
            release(payer.books, payment_id)
            return self._not_paid(url, intent, offer, "chain_unavailable", str(exc), approval_id)
        except BaseException:
            release(payer.books, payment_id)  # nothing signed, nothing sent: free the budget
            raise
        crash_point("agent.after_sign")
        return prepared

    def _signed(
        self,
        url: str,
        challenge: Challenge,
        offer: Offer,
        intent: Intent,
        payment_id: int,
        valid_after: int,
        deadline: int,
        facilitator: str,
        *,
        approval_id: int | None,
    ) -> UptoPrepared:
        payer = self.payer
        nonce = permit_nonce(payment_id, payer.address)
        authorization = UptoAuthorization(
            from_address=payer.address,
            token=payer.asset.address,
            amount=offer.amount,
            nonce=nonce,
            deadline=deadline,
            to=offer.requirements.pay_to,
            facilitator=facilitator,
            valid_after=valid_after,
        )
        # Deterministic (RFC 6979) signing: the same permit, the same bytes.
        signature = sign_authorization(payer.signer, authorization, payer.chain.chain_id)
        body = {
            "x402Version": X402_VERSION,
            "payload": {
                "signature": "0x" + signature.hex(),
                "permit2Authorization": authorization.to_wire(),
            },
            "accepted": dict(offer.raw) or offer.requirements.to_wire(),
            "resource": dict(challenge.resource) if challenge.resource else {"url": url},
        }
        approval = self._approval(challenge, offer, deadline)
        if approval is not None:
            body["extensions"] = {EIP2612_KEY: {"info": approval.to_wire()}}
        header = (PAYMENT_SIGNATURE_HEADER, b64_json(body))
        return UptoPrepared(
            url=url,
            offer=offer,
            intent=intent,
            payment_id=payment_id,
            ceiling=offer.amount,
            pay_to=offer.requirements.pay_to,
            nonce=nonce,
            valid_after=valid_after,
            deadline=deadline,
            header=header,
            asset=payer.asset,
            approval_id=approval_id,
        )

    def _approval(self, challenge: Challenge, offer: Offer, deadline: int) -> Eip2612Permit | None:
        """A gasless EIP-2612 approval of Permit2 for the ceiling, when one is needed and offered.

        Its value is the ceiling (the proxy requires it) and its deadline the
        permit's; the token's nonce is read now (``ChainError`` or
        ``SigningError`` when the chain does not answer).
        """
        payer = self.payer
        if not _sponsored(challenge) or self.allowance() >= offer.amount:
            return None
        requirements = parse_requirements(offer.raw)
        if isinstance(requirements, WireRefusal):
            raise SigningError(f"the upto offer cannot be read: {requirements.reason}")
        nonce = token_nonce(payer.chain, payer.asset.address, payer.address)
        return sign_eip2612_permit(payer.signer, requirements, nonce=nonce, deadline=deadline)

    # ------------------------------------------------------------ after sending

    def conclude(self, prepared: UptoPrepared, answer: SellerAnswer) -> PaymentOutcome:
        """Book the seller's answer to a signed ``upto`` payment; see the module doc."""
        settlement = settlement_from(answer.settlement)
        if answer.delivered and settlement is not None and settlement.success:
            if settlement.network not in ("", self.payer.asset.network) or (
                settlement.payer is not None
                and settlement.payer.lower() != self.payer.address.lower()
            ):
                self._record(prepared, "receipt_not_ours", settlement.amount, "another payer")
                return prepared.outcome(
                    "possible_spend",
                    "settlement_unknown",
                    message="the receipt names another payment",
                )
            return self._settled(prepared, settlement.transaction, settlement.amount)
        if answer.refused:
            challenge = answer.challenge
            seller_reason = (
                (settlement.reason if settlement is not None else None)
                or (challenge.error if isinstance(challenge, Challenge) else None)
                or "payment_not_accepted"
            )
            message = settlement.message if settlement is not None else None
            state = self._permit_state(prepared)
            if isinstance(state, PermitSettlement):  # refused, yet it settled: book it
                return self._post(prepared, state, message=f"the seller said {seller_reason}")
            if state != "unused":
                return prepared.outcome("possible_spend", seller_reason, message=message)
            result = release(self.payer.books, prepared.payment_id)
            if result not in ("ok", "exists"):
                log.warning("voiding payment %d failed: %s", prepared.payment_id, result)
            return prepared.outcome("refused", seller_reason, message=message)
        detail = f"the seller answered {answer.status}"
        if settlement is not None and settlement.reason:
            detail += f" ({settlement.reason})"
        state = self._permit_state(prepared)
        if isinstance(state, PermitSettlement) and answer.delivered:
            return self._post(prepared, state, message=detail)
        reason = (
            "content_not_delivered" if isinstance(state, PermitSettlement) else "settlement_unknown"
        )
        return prepared.outcome("possible_spend", reason, message=detail)

    def after_error(self, prepared: UptoPrepared, error: BaseException) -> PaymentOutcome:
        """No answer after the signed request: possible spend; the ceiling stays reserved."""
        detail = f"{type(error).__name__} after the payment was sent"
        return prepared.outcome("possible_spend", "timeout", message=detail)

    def _settled(self, prepared: UptoPrepared, tx_hash: str, claimed: int | None) -> PaymentOutcome:
        """A success receipt: what the chain shows of it, posted; a claim it does not show, recorded."""
        if claimed is not None and claimed > prepared.ceiling:
            self._record(
                prepared, "settled_above_ceiling", claimed,
                f"claimed {claimed}, the permit's ceiling is {prepared.ceiling}",
            )  # fmt: skip
        if not tx_hash:
            if claimed not in (0, None):
                self._record(prepared, "amount_without_transaction", claimed, "no transaction")
            # Zero settled, says the seller: the permit stays valid until its
            # deadline, so the ceiling stays reserved until then (resolve_upto).
            return prepared.outcome(
                "paid", None, amount=0,
                message="settled 0; the ceiling stays reserved until the permit's deadline",
            )  # fmt: skip
        payer = self.payer
        try:
            found = settlement_in(
                payer.chain,
                tx_hash,
                owner=payer.address,
                nonce=prepared.nonce,
                token=payer.asset.address,
            )
        except ChainError as exc:
            return prepared.outcome("possible_spend", "settlement_unknown", message=str(exc))
        if isinstance(found, str):
            self._record(prepared, found, claimed, f"the receipt names {tx_hash}")
            return prepared.outcome(
                "possible_spend", "settlement_unverified", message=f"{found}: {tx_hash}"
            )
        if claimed is not None and claimed != found.amount and claimed <= prepared.ceiling:
            self._record(
                prepared, "settled_amount_mismatch", claimed,
                f"claimed {claimed}, the chain moved {found.amount} in {tx_hash}",
            )  # fmt: skip
        return self._post(prepared, found)

    def _post(
        self, prepared: UptoPrepared, found: PermitSettlement, *, message: str | None = None
    ) -> PaymentOutcome:
        """Post what the chain moved to the signed payee (at most the reservation); release the rest."""
        if found.pay_to.lower() != prepared.pay_to.lower() or found.moved_elsewhere:
            self._record(
                prepared, "payee_mismatch", found.amount,
                f"{found.tx_hash} paid {found.pay_to}, {found.moved_elsewhere} elsewhere",
            )  # fmt: skip
        outcome = post_settled(self.payer.books, prepared.payment_id, found)
        amount = min(found.amount, prepared.ceiling)
        if outcome not in ("ok", "exists"):
            # The money moved but the books could not say so (for example the
            # reservation expired): reconciliation books it.
            log.warning("posting payment %d failed: %s", prepared.payment_id, outcome)
            message = f"paid; booking left to reconciliation ({outcome})"
        return prepared.outcome("paid", None, tx_hash=found.tx_hash, message=message, amount=amount)

    def _permit_state(self, prepared: UptoPrepared) -> PermitSettlement | str:
        """Settled (and where), ``unused``, ``used_elsewhere`` or ``unknown``."""
        payer = self.payer
        try:
            if not nonce_used(payer.chain, payer.address, prepared.nonce):
                return "unused"
            head = payer.chain.block_number()
            found = find_settlement(
                payer.chain,
                owner=payer.address,
                nonce=prepared.nonce,
                token=payer.asset.address,
                from_block=max(0, head - _LOG_LOOKBACK_BLOCKS),
            )
        except ChainError as exc:
            log.warning("cannot read the permit's state: %s", exc)
            return "unknown"
        return found if found is not None else "used_elsewhere"

    def _record(self, prepared: UptoPrepared, kind: str, claimed: int | None, detail: str) -> None:
        record_discrepancy(self.payer.books, prepared.payment_id, kind, claimed, detail)

    def _not_paid(
        self,
        url: str,
        intent: Intent,
        offer: Offer,
        reason: str,
        message: str | None,
        approval_id: int | None,
    ) -> PaymentOutcome:
        return PaymentOutcome(
            status="not_paid",
            url=url,
            reason=reason,
            message=message,
            amount=offer.amount,
            asset=self.payer.asset,
            pay_to=offer.requirements.pay_to,
            approval_id=approval_id,
            task_id=intent.task_id,
            purpose=intent.purpose,
        )


def _sponsored(challenge: Challenge) -> bool:
    """The seller's 402 declares that its facilitator takes a gasless EIP-2612 approval."""
    return challenge.extensions is not None and EIP2612_KEY in challenge.extensions
