"""Choosing what to pay from a seller's offers: a known network and asset, then the cheapest.

The wallet can sign for one token on one network. An offer is acceptable when
it uses the ``exact`` or ``batch-settlement`` scheme, that network, that
token, and the token's EIP-712 domain as the wallet knows it (read from the
chain, never taken from the seller). Among acceptable offers the cheapest
wins; ties keep the seller's order. When nothing fits, the reason says the
most useful thing first: the network, then the token, then the scheme.

The scheme: ``exact`` or ``upto`` (one payment per request) unless the
caller prefers a channel (``prefer_channel``, decided by
:meth:`farthing.agents.payer.Payer.prefers_channel`: repeated buys from one
payee) or ``batch-settlement`` is all the seller offers;
``allow_channel=False`` (an approval threshold or an asset allowlist is set)
leaves it out. ``upto`` is considered only when ``allow_upto`` (the offer
names its facilitator and Permit2 may spend the wallet's token:
:meth:`farthing.agents.upto.UptoPayer.usable`).

Between ``exact`` and ``upto`` the policy judges the worst case: an ``upto``
offer's amount is its ceiling, the most the seller may take, and that is
what is compared, reserved and approved. The smallest worst case wins; on a
tie ``upto`` wins, since it can only charge that much or less.
"""

from __future__ import annotations

from farthing.agents.challenge import Challenge, Offer
from farthing.paywall.schemes.batch_settlement.wire import SCHEME as SCHEME_CHANNEL
from farthing.paywall.schemes.upto.types import SCHEME as SCHEME_UPTO
from farthing.paywall.wire import SCHEME_EXACT
from farthing.wallet.money import Asset

__all__ = ["choose_offer"]


def choose_offer(
    challenge: Challenge,
    asset: Asset,
    *,
    prefer_channel: bool = False,
    allow_channel: bool = True,
    allow_upto: bool = False,
) -> Offer | str:
    """The cheapest offer this wallet can pay, or the snake_case reason none fits."""
    on_network = [o for o in challenge.offers if o.requirements.network == asset.network]
    if not on_network:
        if challenge.offers or "unsupported_network" in challenge.skipped:
            return "unsupported_network"
        # Nothing could be read at all: every entry was malformed.
        return "malformed_payment_required"
    in_asset = [o for o in on_network if o.requirements.asset.lower() == asset.address.lower()]
    if not in_asset:
        return "unsupported_asset"
    schemes = (
        (SCHEME_EXACT,)
        + ((SCHEME_CHANNEL,) if allow_channel else ())
        + ((SCHEME_UPTO,) if allow_upto else ())
    )
    usable = [o for o in in_asset if o.requirements.scheme in schemes]
    if not usable:
        return "unsupported_scheme"
    same_domain = [
        o
        for o in usable
        if (o.requirements.token_name, o.requirements.token_version) == (asset.name, asset.version)
    ]
    if not same_domain:
        return "asset_domain_mismatch"
    channel = [o for o in same_domain if o.requirements.scheme == SCHEME_CHANNEL]
    single = [o for o in same_domain if o.requirements.scheme != SCHEME_CHANNEL]
    pool = channel if (prefer_channel and channel) or not single else single
    return min(pool, key=lambda o: (o.amount, o.requirements.scheme != SCHEME_UPTO))
