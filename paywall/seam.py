"""The facilitator seam: what any facilitator (local or remote) answers.

:class:`Facilitator` is x402's ``FacilitatorClient`` shape, async;
:class:`ResolvingFacilitator` can also read a payment's final outcome from the
chain; :class:`Supported` is the ``GET /supported`` answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from farthing.paywall.wire import (
    SCHEME_EXACT,
    PaymentPayload,
    PaymentRequirements,
    SettleResult,
    VerifyResult,
)

__all__ = ["Facilitator", "ResolvingFacilitator", "Supported"]


@dataclass(frozen=True, slots=True)
class Supported:
    """What ``GET /supported`` lists: the exact scheme on ``networks``, and
    ``batch-settlement`` on ``channel_networks`` (with ``channel_extra``, the
    receiver authorizer the facilitator signs for, when it holds one), and
    ``auth-capture`` on ``auth_capture_networks`` (with ``auth_capture_extra``,
    the operator a server copies into ``extra.captureAuthorizer``)."""

    networks: tuple[str, ...]
    signers: tuple[str, ...] = ()
    channel_networks: tuple[str, ...] = ()
    channel_extra: dict[str, Any] | None = None
    auth_capture_networks: tuple[str, ...] = ()
    auth_capture_extra: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        channel_kinds = [
            {"x402Version": 2, "scheme": "batch-settlement", "network": network}
            | ({"extra": dict(self.channel_extra)} if self.channel_extra else {})
            for network in self.channel_networks
        ]
        auth_capture_kinds = [
            {"x402Version": 2, "scheme": "auth-capture", "network": network}
            | ({"extra": dict(self.auth_capture_extra)} if self.auth_capture_extra else {})
            for network in self.auth_capture_networks
        ]
        return {
            "kinds": [
                {"x402Version": 2, "scheme": SCHEME_EXACT, "network": network}
                for network in self.networks
            ]
            + channel_kinds
            + auth_capture_kinds,
            "extensions": [],
            "signers": {"eip155:*": list(self.signers)} if self.signers else {},
        }


@runtime_checkable
class Facilitator(Protocol):
    """Verifies and settles payments; outcomes are values, outages raise."""

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResult: ...

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResult: ...

    async def supported(self) -> Supported: ...


@runtime_checkable
class ResolvingFacilitator(Facilitator, Protocol):
    """A facilitator that can read a payment's final outcome from the chain."""

    async def resolve(
        self, requirements: PaymentRequirements, payer: str, nonce: bytes, tx_hash: str | None
    ) -> SettleResult | None: ...
