"""The escrow operator seam: who sends ``authorize``, ``capture``, ``void`` and ``refund``.

The x402 ``auth-capture`` scheme has a facilitator act as the payment's
``delegated`` operator. The jobs service does not care who that is, only that
these five calls exist, so they are a Protocol (:class:`EscrowOperator`):

* :class:`DirectEscrowOperator` sends them itself through
  :class:`~farthing.paywall.schemes.auth_capture.contract.AuthCaptureEscrow` with an operator key
  the agent holds (the default, and what the tests use);
* a facilitator client (``farthing.paywall``'s auth-capture facilitator, when
  it is wired in) fits the same shape.

Reclaim is not here: it is the payer's own call after the capture deadline,
and the service sends it with the payer's key.
"""

from __future__ import annotations

from typing import Protocol

from farthing.invariant import invariant
from farthing.paywall.schemes.auth_capture.contract import AuthCaptureEscrow, PaymentState
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.wallet.chain import TxResult
from farthing.wallet.money import Asset
from farthing.wallet.signer import TxSigner
from farthing.wallet.token import Stablecoin

__all__ = ["DirectEscrowOperator", "EscrowOperator"]


class EscrowOperator(Protocol):
    """The payment's operator: every escrow write but ``reclaim``. Outcomes are ``TxResult`` values."""

    @property
    def address(self) -> str:
        """The operator's address (``PaymentInfo.operator``)."""
        ...

    def authorize(self, info: PaymentInfo, amount: int, collector_data: bytes) -> TxResult: ...

    def capture(self, info: PaymentInfo, amount: int) -> TxResult: ...

    def void(self, info: PaymentInfo) -> TxResult: ...

    def refund(self, info: PaymentInfo, amount: int) -> TxResult: ...

    def payment_state(self, info: PaymentInfo) -> PaymentState: ...


class DirectEscrowOperator:
    """The operator's calls sent straight to the escrow with the operator's own key.

    Refund money comes from the operator through the escrow's
    ``OperatorRefundCollector``: before a refund the operator approves that
    collector for exactly what the refund needs, when its allowance is short.
    """

    def __init__(self, escrow: AuthCaptureEscrow, signer: TxSigner, asset: Asset) -> None:
        self.escrow = escrow
        self.signer = signer
        self.token = Stablecoin(escrow.chain, asset)

    def __repr__(self) -> str:
        return f"DirectEscrowOperator({self.signer.address} on {self.escrow!r})"

    @property
    def address(self) -> str:
        return self.signer.address

    def authorize(self, info: PaymentInfo, amount: int, collector_data: bytes) -> TxResult:
        return self.escrow.authorize(info, amount, collector_data, sender=self.signer)

    def capture(self, info: PaymentInfo, amount: int) -> TxResult:
        # Jobs charge no fee: minFeeBps = maxFeeBps = 0 and no fee receiver.
        return self.escrow.capture(info, amount, sender=self.signer)

    def void(self, info: PaymentInfo) -> TxResult:
        return self.escrow.void(info, sender=self.signer)

    def refund(self, info: PaymentInfo, amount: int) -> TxResult:
        collector = self.escrow.contracts.operator_refund_collector
        invariant(info.token == self.token.address, "a refund in the operator's token")
        if self.token.allowance(self.signer.address, collector) < amount:
            approved = self.token.approve(collector, amount, sender=self.signer)
            if not approved.ok:
                return approved
        return self.escrow.refund(info, amount, sender=self.signer)

    def payment_state(self, info: PaymentInfo) -> PaymentState:
        return self.escrow.payment_state(info)
