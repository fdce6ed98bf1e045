"""What became of one paid request: a value with a status and a snake_case reason.

Every purchase ends in one of five states:

* ``free``: the seller asked for nothing (no 402);
* ``paid``: the seller settled and sent ``PAYMENT-RESPONSE``; the reservation is posted;
* ``not_paid``: the agent declined before signing anything (policy, budget,
  approval, an unusable 402); nothing is reserved;
* ``refused``: the seller refused the signed payment and the chain confirms the
  authorization was not used; the reservation is voided;
* ``possible_spend``: the outcome is unknown (a timeout after the signature was
  sent, a 5xx): the reservation stays pending until the authorization's
  on-chain state resolves it (``farthing.agents.resolve`` or
  ``farthing ledger reconcile --resolve``).

The paying client attaches the outcome to the response (``response.extensions``)
and, before sending a signed payment, to that request, so a caller that gets a
timeout can still say what may have been spent (:func:`outcome_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import httpx

from farthing.ledger.ids import format_transfer_id
from farthing.wallet.money import Asset

__all__ = [
    "OUTCOME_EXTENSION",
    "REASONS",
    "OutcomeStatus",
    "PaymentOutcome",
    "outcome_of",
]

OUTCOME_EXTENSION: Final = "farthing.payment"

OutcomeStatus = Literal["free", "paid", "not_paid", "refused", "possible_spend"]

# Why the agent did not pay, in words a model and a person both understand.
REASONS: Final[dict[str, str]] = {
    "malformed_payment_required": "the seller's payment terms could not be read",
    "unsupported_x402_version": "the seller speaks an x402 version this client does not",
    "unsupported_network": "the seller accepts payment only on networks this wallet is not on",
    "unsupported_asset": "the seller accepts only tokens this wallet does not hold",
    "unsupported_scheme": "the seller accepts only payment schemes this client cannot sign",
    "asset_domain_mismatch": "the seller names this token with a different EIP-712 domain",
    "price_above_max": "the price is above the most this purchase may cost",
    "host_not_allowed": "the host is not on the spend policy's allowlist",
    "host_denied": "the host is on the spend policy's denylist",
    "payee_not_allowed": "the payee is not on the spend policy's allowlist",
    "payee_denied": "the payee is on the spend policy's denylist",
    "approval_denied": "a person denied the approval this payment needed",
    "approval_timeout": "nobody approved this payment in time, so it was not made",
    "exceeds_budget": "the agent's budget does not have enough left",
    "exceeds_task_budget": "the task's budget does not have enough left",
    "exceeds_total_budget": "the agent's total spending limit would be passed",
    "exceeds_payment_cap": "the price is above the per-payment cap",
    "exceeds_daily_limit": "the daily spending limit would be passed",
    "exceeds_payee_daily_cap": "the daily limit for this payee would be passed",
    "asset_not_allowed": "the token is not on the spend policy's asset allowlist",
    "insufficient_balance": "the wallet holds less than the price",
    "chain_unavailable": "the chain did not answer before signing; nothing was paid or held",
    "possible_spend_unresolved": (
        "an earlier payment for the same purchase may have gone through; "
        "it must be resolved from the chain before paying again"
    ),
    "host_unreachable": "the host could not be reached",
    "payment_not_accepted": "the seller answered 402 again after payment without a reason",
    "settlement_unknown": "the seller did not confirm the payment",
    "timeout": "the seller did not answer in time after the payment was sent",
    "channel_withdraw_delay_too_long": (
        "the seller's channel locks a deposit longer than the spend policy allows"
    ),
    "channel_busy": "every payment channel to this seller is busy or stopped",
    "channel_resynced": "the seller corrected the channel's state; the request is signed again",
    "charge_above_ceiling": (
        "the seller charged more than the request's price; the channel is stopped and withdrawn"
    ),
    "cumulative_inconsistent": (
        "the seller's running total does not match what was signed; the channel is stopped"
    ),
    "channel_id_mismatch": "the seller answered for another channel; the channel is stopped",
    "channel_response_malformed": "the seller's channel receipt could not be read; channel stopped",
    "already_owned": "already paid for, so it signed in with the paying wallet to read it again",
    "permit2_allowance_required": (
        "the seller asks for an upto payment and Permit2 may not spend this wallet's token "
        "(approve Permit2 once)"
    ),
    "settlement_unverified": (
        "the seller's receipt does not match the chain; the ceiling stays reserved until "
        "the chain says what was settled"
    ),
    "content_not_delivered": (
        "the payment was settled on-chain but the seller's answer never came; "
        "retry the same purchase to collect it without paying again"
    ),
}


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """One purchase attempt: its status, why, and what was (or may have been) paid."""

    status: OutcomeStatus
    url: str
    reason: str | None = None
    message: str | None = None  # a detail from the seller or the policy, one line
    amount: int | None = None  # atomic units of ``asset``
    asset: Asset | None = None
    pay_to: str | None = None
    payment_id: int | None = None
    tx_hash: str | None = None
    task_id: str | None = None
    purpose: str | None = None
    approval_id: int | None = None

    def __post_init__(self) -> None:
        # A refusal always says why in words: the policy's and the ledger's
        # reasons come without a detail, so the reason's sentence stands in.
        if self.message is None and self.reason is not None:
            object.__setattr__(self, "message", REASONS.get(self.reason, self.reason))

    @property
    def spent(self) -> bool:
        """True when money moved for certain."""
        return self.status == "paid"

    def price(self) -> str:
        """The amount in human units, e.g. ``"0.01385 USDC"``, or ``"-"``."""
        if self.amount is None or self.asset is None:
            return "-"
        return self.asset.format(self.amount)

    def describe(self) -> str:
        """One sentence for a person or a model."""
        price = self.price()
        if self.status == "free":
            return f"{self.url} was free"
        if self.status == "paid":
            return f"paid {price} to {self.pay_to} for {self.url} (transaction {self.tx_hash})"
        why = REASONS.get(self.reason or "", self.reason or "unknown reason")
        detail = f" ({self.message})" if self.message and self.message != why else ""
        if self.status == "possible_spend":
            payment = "-" if self.payment_id is None else format_transfer_id(self.payment_id)
            return (
                f"payment {payment} of {price} for {self.url} may have been spent: {why}"
                f"{detail}; it stays reserved until resolved from the chain"
            )
        if self.status == "refused":
            return f"the seller refused the payment of {price} for {self.url}: {why}{detail}"
        what = f" {price}" if self.amount is not None else ""
        return f"did not pay{what} for {self.url}: {self.reason}: {why}{detail}"


def outcome_of(message: httpx.Response | httpx.Request) -> PaymentOutcome | None:
    """The outcome the paying client attached to a response (or to the paid request)."""
    value = message.extensions.get(OUTCOME_EXTENSION)
    return value if isinstance(value, PaymentOutcome) else None
