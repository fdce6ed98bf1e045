"""What a batch-settlement route offers: its ``accepts`` entry and the terms a channel must match.

Both depend only on the route's own terms (token, payee, the server's
receiver authorizer and withdraw delay), never on the request, so
:class:`ChannelOffers` builds each once and hands out copies: the paywall
prices every request, and rebuilding the ``extra`` and the checksummed
terms each time cost a voucher more than its row's read. (A corrective 402's
channel and voucher state is added to the refusal by the server, not here.)
"""

from __future__ import annotations

from typing import Any, Final

from farthing.paywall.schemes.batch_settlement.extras import BatchExtra
from farthing.paywall.schemes.batch_settlement.state import ChannelTerms
from farthing.paywall.schemes.batch_settlement.types import ChannelRequirements

__all__ = ["ChannelOffers"]

# Route terms kept (a handful of tokens and payees; past this they are built each time).
_KEPT_MAX: Final = 256


class ChannelOffers:
    """One server's channel offers: ``receiver_authorizer`` and its channel settings."""

    def __init__(
        self, receiver_authorizer: str, withdraw_delay_s: int, min_deposit: int | None
    ) -> None:
        self.receiver_authorizer = receiver_authorizer
        self.withdraw_delay_s = withdraw_delay_s
        self.min_deposit = min_deposit
        self._extras: dict[tuple[str, str], dict[str, Any]] = {}
        self._terms: dict[tuple[str, str], ChannelTerms] = {}

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
        """The route's ``accepts`` entry."""
        kept = self._extras.get((name, version))
        if kept is None:
            kept = self._extra(name, version).to_wire()
            if len(self._extras) < _KEPT_MAX:
                self._extras[(name, version)] = kept
        wire = dict(kept)  # the caller's own: it may change it
        return ChannelRequirements(network, asset, amount, pay_to, max_timeout_seconds, wire)

    def terms(self, offer: ChannelRequirements) -> ChannelTerms:
        """What every channel paying ``offer`` must fix in its config."""
        key = (offer.pay_to, offer.asset)
        terms = self._terms.get(key)
        if terms is None:
            terms = ChannelTerms(
                receiver=offer.pay_to,
                receiver_authorizer=self.receiver_authorizer,
                token=offer.asset,
                withdraw_delay_s=self.withdraw_delay_s,
            )
            if len(self._terms) < _KEPT_MAX:
                self._terms[key] = terms
        return terms

    def _extra(self, name: str, version: str) -> BatchExtra:
        return BatchExtra(
            receiver_authorizer=self.receiver_authorizer,
            withdraw_delay_s=self.withdraw_delay_s,
            name=name,
            version=version,
            min_deposit=self.min_deposit,
        )
