"""How much a channel deposit locks, and whether a person must say yes first.

A deposit moves money out of the wallet into the seller's escrow, where only
the payer's own timed withdrawal (the seller chose the delay) brings it
back. So it is approved like a payment:

* :func:`plan_deposit` picks the amount: ``channel_deposit_multiple`` × price
  (fewer deposits for repeated buys), but never more than the policy's
  approval threshold on that account alone: above it, the deposit is the
  smallest the seller accepts (``min_deposit``) that covers this purchase.
  It is at most ``channel_deposit_max``. A channel whose withdraw delay is
  longer than the policy's ``channel_withdraw_delay_max_s`` is refused
  (``channel_withdraw_delay_too_long``) before anything is reserved.
* :func:`ask_for_deposit` asks a person (the same ``agent_approval`` table,
  ``farthing agent approvals approve|deny`` and timeout as a payment) when the
  planned deposit is above ``approval_above``. The caller holds no channel
  lease and no reservation while it waits.
* :func:`lock_deposit` reserves the deposit (at most the budget's room) and
  fixes its ERC-3009 authorization (the scheme's client part) before
  anything is signed: its nonce from the deposit's id, its window from the
  chain's clock.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from farthing.agents.approvals import Approval, request_approval, wait_for_decision
from farthing.agents.channels.books import DepositAuthorization, reserve_deposit, void_pending
from farthing.agents.channels.store import ChannelRow
from farthing.agents.policy import SpendPolicy, needs_approval
from farthing.ledger import new_id
from farthing.paywall.schemes.batch_settlement.client import deposit_authorization
from farthing.wallet.eip3009 import Authorization
from farthing.wallet.errors import ChainError

if TYPE_CHECKING:
    from farthing.agents.challenge import Offer
    from farthing.agents.channels.payer import ChannelPayer
    from farthing.agents.payer import Intent, Payer
    from farthing.agents.settings import AgentSettings
    from farthing.paywall.schemes.batch_settlement.extras import BatchExtra

__all__ = [
    "ask_for_deposit",
    "deposit_needs_approval",
    "lock_deposit",
    "plan_deposit",
    "refusal",
]

log = logging.getLogger("farthing.agents")


def plan_deposit(
    policy: SpendPolicy,
    settings: AgentSettings,
    extra: BatchExtra,
    *,
    price: int,
    missing: int,
) -> int | str:
    """The deposit to lock for a purchase the channel lacks ``missing`` for, or a reason not to."""
    withdraw_delay_s, min_deposit = extra.withdraw_delay_s, extra.min_deposit
    multiple, deposit_max = settings.channel_deposit_multiple, settings.channel_deposit_max
    if withdraw_delay_s > policy.channel_withdraw_delay_max_s:
        return "channel_withdraw_delay_too_long"
    floor = max(missing, min_deposit or 0)  # the least the seller accepts that covers this buy
    wanted = max(floor, price * multiple)
    if policy.approval_above is not None and wanted > policy.approval_above:
        # The multiple is a convenience, never a reason to ask a person.
        wanted = max(floor, policy.approval_above)
    return max(missing, min(wanted, deposit_max))


def deposit_needs_approval(policy: SpendPolicy, amount: int, approved: int) -> bool:
    """True when ``amount`` is above the threshold and more than a person already approved."""
    return needs_approval(policy, amount) and amount > approved


def refusal(decided: Approval) -> str:
    """The reason a deposit a person did not approve was not made."""
    return "approval_denied" if decided.status == "denied" else "approval_timeout"


def ask_for_deposit(
    payer: Payer, policy: SpendPolicy, amount: int, pay_to: str, url: str, intent: Intent
) -> Approval:
    """Write the approval request for a deposit of ``amount`` to ``pay_to``'s channel and wait for it."""
    approval = request_approval(
        payer.books.database,
        agent_id=payer.books.agent_id,
        asset=payer.asset,
        amount=amount,
        pay_to=pay_to,
        resource=url,
        task_id=intent.task_id,
        purpose=intent.purpose,
    )
    log.info(
        "channel deposit of %s for %s waits for approval %d",
        payer.asset.format(amount),
        url,
        approval.id,
    )
    if payer.on_approval is not None:
        payer.on_approval(approval, policy.approval_timeout_s)
    return wait_for_decision(
        payer.books.database,
        approval.id,
        timeout_s=policy.approval_timeout_s,
        poll_s=payer.settings.approval_poll_s,
    )


def lock_deposit(
    channels: ChannelPayer,
    row: ChannelRow,
    wanted: int,
    needed: int,
    intent: Intent,
    offer: Offer,
) -> tuple[int, int, Authorization] | str:
    """Lock a deposit of ``wanted`` (or less: the budget's room) and fix its authorization.

    The nonce comes from the id, the window from the chain's clock.
    """
    settings = channels.payer.settings
    missing = needed - row.balance
    deposit_id = new_id()
    try:
        now = channels.payer.chain.timestamp()
    except ChainError:
        return "chain_unavailable"
    terms = deposit_authorization(
        payer=channels.payer.address,
        collector=channels.collector,
        channel_id=row.channel_id,
        deposit_id=deposit_id,
        value=wanted,
        now=now,
        valid_for_s=settings.valid_for_s,
        max_timeout_seconds=offer.requirements.max_timeout_seconds,
    )
    locked = reserve_deposit(
        channels.books,
        deposit_id=deposit_id,
        channel_id=row.channel_id,
        amount=wanted,
        wanted_min=missing,
        task_id=intent.task_id,
        authorization=DepositAuthorization(
            nonce="0x" + terms.nonce.hex(),
            payer=channels.payer.address,
            valid_after=terms.valid_after,
            valid_before=terms.valid_before,
        ),
    )
    if isinstance(locked, str):
        return locked
    try:
        balance = channels.payer.balance()
    except ChainError:
        void_pending(channels.books, deposit_id)
        return "chain_unavailable"
    if balance < locked:
        void_pending(channels.books, deposit_id)
        return "insufficient_balance"
    return deposit_id, locked, replace(terms, value=locked)
