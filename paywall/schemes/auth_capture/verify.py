"""The auth-capture checks that read the chain, run before anything is sent.

:class:`EscrowVerifier` runs the spec's checks in order. The envelope first
(network, operator, the facilitator's scope). Of the client's collect
payload: the checks that need no chain (``checks.py``), a contract
wallet's signature (ERC-1271, ERC-6492 or EIP-7702, through
``farthing.paywall.schemes.signatures``: verified, not left to the
simulation), the nonce's state, the payer's balance, then a simulation of
``authorize``. Of a lifecycle
payload: operator, salt binding and the ``paymentInfo`` against the
requirements, the operation's preconditions against ``paymentState``
(including the single-use balance check), the refund funding agreement, then
a simulation. Each failure raises :class:`~farthing.paywall.schemes.auth_capture.reads.Refused`
with the spec's reason.
"""

from __future__ import annotations

from collections.abc import Callable

from farthing.paywall.schemes.auth_capture.checks import (
    check_capture,
    check_collect,
    check_lifecycle,
    check_refund,
    check_void,
    collect_info,
)
from farthing.paywall.schemes.auth_capture.contract import PaymentState
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.paywall.schemes.auth_capture.reads import EscrowReads, Refused, refuse
from farthing.paywall.schemes.auth_capture.types import (
    ERR_INSUFFICIENT_BALANCE,
    ERR_NETWORK_MISMATCH,
    ERR_OPERATOR_NOT_ADMITTED,
    ERR_PAYMENT_ALREADY_COLLECTED,
    ERR_REFUND_FUNDING_UNAVAILABLE,
    ERR_SIGNATURE,
)
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCapturePayment,
    AuthCaptureRequirements,
    CapturePayload,
    CollectPayload,
    RefundPayload,
    VoidPayload,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.signatures import check_signature
from farthing.paywall.scope import SettleScope
from farthing.wallet.eip712 import RECEIVE_WITH_AUTHORIZATION, authorization_digest
from farthing.wallet.eip3009 import TokenDomain
from farthing.wallet.erc6492 import unwrap

__all__ = ["EscrowVerifier", "LifecyclePayload"]

LifecyclePayload = CapturePayload | VoidPayload | RefundPayload


class EscrowVerifier:
    """The checks of one facilitator: its network, operator, scope and refund agreements."""

    def __init__(
        self,
        reads: EscrowReads,
        *,
        network: str,
        scope: SettleScope,
        refund_receivers: frozenset[str],
        clock: Callable[[], float],
    ) -> None:
        self.reads = reads
        self.network = network
        self.scope = scope
        self.refund_receivers = refund_receivers
        self.clock = clock

    def __repr__(self) -> str:
        return f"EscrowVerifier({self.network}, operator={self.reads.operator})"

    def now(self) -> int:
        return int(self.clock())

    def check_envelope(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> None:
        """The spec's checks 2-5 (scheme and extra were checked by the parser)."""
        if payment.accepted.network != requirements.network:
            raise Refused(ERR_NETWORK_MISMATCH, "paid on another network than the offer's")
        if requirements.network != self.network:
            raise Refused(ERR_NETWORK_MISMATCH, f"this facilitator settles on {self.network}")
        if requirements.extra.capture_authorizer != self.reads.operator:
            raise Refused(
                ERR_OPERATOR_NOT_ADMITTED,
                f"captureAuthorizer must be this facilitator's operator {self.reads.operator}",
            )
        outside = self.scope.refusal(requirements.asset, requirements.pay_to)
        if outside is not None:
            raise Refused(*outside)

    def collect_info(
        self, payload: CollectPayload, requirements: AuthCaptureRequirements
    ) -> PaymentInfo:
        info = collect_info(payload, requirements)
        if isinstance(info, WireRefusal):
            raise Refused(info.reason, info.detail)
        return info

    def verify_collect(
        self, payload: CollectPayload, requirements: AuthCaptureRequirements
    ) -> tuple[PaymentInfo, PaymentState]:
        info = self.collect_info(payload, requirements)
        code = self.reads.read(lambda: self.reads.chain.code_at(payload.payer))
        # A deployed wallet, or one an ERC-6492 wrapper will deploy (the collector unwraps it).
        contract_wallet = bool(code) or unwrap(payload.signature) is not None
        refuse(
            check_collect(
                payload,
                requirements,
                info,
                now=self.now(),
                collector=self.reads.contracts.erc3009_collector,
                payer_is_contract=contract_wallet,
            )
        )
        if contract_wallet:
            self._wallet_signature(payload, requirements)
        nonce = payload.authorization.nonce
        used = self.reads.read(
            lambda: self.reads.chain.authorization_state(requirements.asset, payload.payer, nonce)
        )
        if used:
            raise Refused(ERR_PAYMENT_ALREADY_COLLECTED, "this authorization was already used")
        if self.reads.balance(requirements.asset, payload.payer) < requirements.amount:
            raise Refused(ERR_INSUFFICIENT_BALANCE, "the payer's balance is below the amount")
        data = self.reads.escrow.encode_authorize(
            info, requirements.amount, self.reads.contracts.erc3009_collector, payload.signature
        )
        self.reads.simulate(data)
        return info, self.reads.state(info)

    def _wallet_signature(
        self, payload: CollectPayload, requirements: AuthCaptureRequirements
    ) -> None:
        """A contract wallet's ReceiveWithAuthorization signature, asked of the wallet itself."""
        extra = requirements.extra
        domain = TokenDomain(extra.name, extra.version, requirements.chain_id, requirements.asset)
        digest = authorization_digest(payload.authorization, domain, RECEIVE_WITH_AUTHORIZATION)
        chain = self.reads.chain
        check = self.reads.read(
            lambda: check_signature(chain, payload.payer, digest, payload.signature)
        )
        if not check.valid:
            raise Refused(
                ERR_SIGNATURE, f"the payer's wallet refuses the signature ({check.reason})"
            )

    def verify_lifecycle(
        self, payload: LifecyclePayload, requirements: AuthCaptureRequirements
    ) -> tuple[PaymentInfo, PaymentState]:
        info = payload.info
        refund_collector = self.reads.contracts.operator_refund_collector
        refuse(check_lifecycle(payload, requirements, refund_collector=refund_collector))
        state = self.reads.state(info)
        if isinstance(payload, CapturePayload):
            refuse(check_capture(payload, info, state, now=self.now()))
            self.reads.simulate(self.capture_data(payload))
        elif isinstance(payload, VoidPayload):
            refuse(check_void(state))
            self.reads.simulate(self.reads.escrow.encode_void(info))
        else:
            refuse(check_refund(payload, info, state, now=self.now()))
            if info.receiver not in self.refund_receivers:
                raise Refused(
                    ERR_REFUND_FUNDING_UNAVAILABLE, "no refund funding agreement with this receiver"
                )
            if self.reads.balance(info.token, self.reads.operator) < payload.amount:
                raise Refused(
                    ERR_REFUND_FUNDING_UNAVAILABLE, "the operator's refund funds are short"
                )
            if self.reads.allowance(info.token) >= payload.amount:
                self.reads.simulate(self.refund_data(payload))
        return info, state

    def capture_data(self, payload: CapturePayload) -> bytes:
        return self.reads.escrow.encode_capture(
            payload.info, payload.amount, payload.fee_amount, payload.fee_receiver
        )

    def refund_data(self, payload: RefundPayload) -> bytes:
        return self.reads.escrow.encode_refund(
            payload.info, payload.amount, self.reads.contracts.operator_refund_collector, b""
        )
