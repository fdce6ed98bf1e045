"""What a facilitator settles: its tokens, and (where configured) its payees.

DESIGN.md §13: a facilitator with no configuration settles only its own
token. Every transaction a facilitator sends is paid for by its relayer, so a
payment it was not set up for (a token of the payer's own making, a payee
nobody named) is refused before anything is simulated or sent. The same
scope is applied by every scheme: ``exact``, ``batch-settlement`` (deposits,
claims, sweeps and refunds) and ``auth-capture``.

An empty set means "any": the library's ``LocalFacilitator`` keeps that
default for in-process use, where the caller is the paywall itself;
``farthing facilitator serve`` always names its tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from farthing.wallet.address import checksum, is_address
from farthing.wallet.errors import AddressError

__all__ = ["REASON_ASSET_NOT_SUPPORTED", "REASON_PAYEE_NOT_ALLOWED", "SettleScope"]

REASON_ASSET_NOT_SUPPORTED: Final = "asset_not_supported"
REASON_PAYEE_NOT_ALLOWED: Final = "payee_not_allowed"


@dataclass(frozen=True, slots=True)
class SettleScope:
    """The tokens and payees a facilitator settles for (checksummed; empty: any)."""

    assets: frozenset[str] = field(default_factory=frozenset)
    payees: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, assets: Iterable[str] = (), payees: Iterable[str] = ()) -> SettleScope:
        """A scope from 0x addresses; anything else raises ``AddressError``."""
        assets, payees = tuple(assets), tuple(payees)
        for address in (*assets, *payees):
            if not is_address(address):
                raise AddressError(f"{address!r} is not a 0x address")
        return cls(frozenset(checksum(a) for a in assets), frozenset(checksum(p) for p in payees))

    def refusal(self, asset: str, payee: str) -> tuple[str, str] | None:
        """``(reason, message)`` when ``asset`` or ``payee`` is outside this scope, else ``None``."""
        if self.assets and _norm(asset) not in self.assets:
            return REASON_ASSET_NOT_SUPPORTED, f"this facilitator does not settle {asset}"
        if self.payees and _norm(payee) not in self.payees:
            return REASON_PAYEE_NOT_ALLOWED, f"this facilitator does not settle for {payee}"
        return None


def _norm(address: str) -> str:
    try:
        return checksum(address)
    except AddressError:
        return address  # matches nothing in the scope
