"""The facilitator's half of x402 ``auth-capture``: verify and settle, with this facilitator as the operator.

:class:`AuthCaptureFacilitator` serves the spec's ``"delegated"`` operator
type: ``extra.captureAuthorizer`` must be the address it submits from.

- **verify** of the client's payload runs the spec's checks in order
  (network, operator, deadlines, time window, collector, signature, amount,
  nonce and salt binding), then reads the payer's balance and the nonce's
  state, and simulates ``authorize``. Of a lifecycle payload: operator, salt
  binding, the ``paymentInfo`` against the requirements, the server's consent
  (``extra.receiverAuthorizer``'s EIP-712 signature), the operation's
  preconditions against ``paymentState`` (including the single-use balance
  check), then a simulation.
- **settle** re-verifies, then sends ``authorize`` (the whole hold),
  ``capture`` (and, with ``voidAuthorizerSignature``, ``void`` of the rest),
  ``void`` or ``refund``. ``reclaim`` is the payer's own call.

**Idempotency.** Every settled operation is journaled under its idempotency
key: the caller's (``idempotency_key=``, or ``payload.idempotencyKey`` on the
wire), else the consent's digest (for ``authorize``, the payment hash). A
repeat with the same key and the same operation answers the first outcome and
sends nothing; the same key for another operation is
``invalid_auth_capture_evm_idempotency_conflict``. A consent replayed under a
new key meets the escrow's moved balances
(``invalid_auth_capture_evm_unexpected_payment_state``), so it moves nothing.
A settlement whose receipt did not arrive in time is journaled as pending;
the retry with its key reads the receipt instead of sending again.

**Refunds** pull from the operator (``OperatorRefundCollector``), which makes
the facilitator a source of value: the spec requires an out-of-band funding
agreement. Refunds are relayed only for receivers in ``refund_receivers``;
for the rest they are ``invalid_auth_capture_evm_refund_funding_unavailable``.

Results carry ``extra``: ``paymentInfoHash``, ``paymentInfo`` and the escrow's
``capturableAmount``/``refundableAmount`` after the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any, Final, Protocol, runtime_checkable

import anyio.to_thread
from eth_abi.abi import encode as abi_encode

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.schemes.auth_capture.consent import payment_hash
from farthing.paywall.schemes.auth_capture.contract import (
    AuthCaptureEscrow,
    PaymentState,
)
from farthing.paywall.schemes.auth_capture.journal import JournalEntry, SettleJournal
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.paywall.schemes.auth_capture.reads import EscrowReads, Refused
from farthing.paywall.schemes.auth_capture.types import (
    ERR_REFUND_FUNDING_UNAVAILABLE,
    ERR_SETTLEMENT_PENDING,
    ERR_SIMULATION_FAILED,
    ERR_TRANSACTION_REVERTED,
)
from farthing.paywall.schemes.auth_capture.verify import EscrowVerifier, LifecyclePayload
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCapturePayment,
    AuthCaptureRequirements,
    CapturePayload,
    CollectPayload,
    RefundPayload,
    VoidPayload,
)
from farthing.paywall.schemes.fields import to_hex
from farthing.paywall.scope import SettleScope
from farthing.paywall.wire import SettleResult, VerifyResult
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.eip712 import (
    keccak256,
)
from farthing.wallet.errors import ChainUnavailableError
from farthing.wallet.networks import CANONICAL_AUTH_CAPTURE_CONTRACTS, AuthCaptureContracts
from farthing.wallet.signer import TxSigner

__all__ = [
    "AuthCaptureFacilitator",
    "AuthCaptureSettling",
]

_APPROVE: Final = bytes(keccak256(b"approve(address,uint256)"))[:4]


@runtime_checkable
class AuthCaptureSettling(Protocol):
    """A facilitator that verifies and settles auth-capture payloads (local or remote)."""

    async def verify_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> VerifyResult: ...

    async def settle_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult: ...


class AuthCaptureFacilitator:
    """Verify and settle auth-capture payloads on one chain, as the ``"delegated"`` operator.

    ``operator_signer`` is ``extra.captureAuthorizer``: it sends every escrow
    call and pays the gas; it is never logged. ``refund_receivers`` are the
    payees with whom a refund funding agreement exists (refunds come out of
    the operator's own balance). ``send`` replaces ``chain.send`` (a shared
    pipelined submitter for the same key). ``scope`` limits the tokens and
    payees it settles (``farthing.paywall.scope``). ``clock`` defaults to the chain's
    own (``chain.timestamp``), which is what the escrow judges deadlines by.
    """

    def __init__(
        self,
        chain: Chain,
        operator_signer: TxSigner,
        *,
        contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS,
        refund_receivers: Collection[str] = (),
        send: Callable[[Call], TxResult] | None = None,
        clock: Callable[[], float] | None = None,
        scope: SettleScope | None = None,
    ) -> None:
        self.chain = chain
        self.scope = scope or SettleScope()
        self.network = chain.network
        self.contracts = contracts
        self.escrow = AuthCaptureEscrow(chain, contracts)
        self.operator = checksum(operator_signer.address)
        self.refund_receivers = frozenset(checksum(a) for a in refund_receivers)
        self._signer = operator_signer
        self._send = send or (lambda call: chain.send(call, sender=operator_signer))
        # The chain's clock by default: deadlines are the escrow's, judged by block time.
        self._clock: Callable[[], float] = clock or chain.timestamp
        self._reads = EscrowReads(chain, self.escrow, contracts, self.operator)
        self._verify = EscrowVerifier(
            self._reads,
            network=self.network,
            scope=self.scope,
            refund_receivers=self.refund_receivers,
            clock=self._clock,
        )
        self._journal = SettleJournal()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"AuthCaptureFacilitator({self.chain!r}, operator={self.operator})"

    def supported_extra(self) -> dict[str, Any]:
        """The ``extra`` of this facilitator's ``/supported`` kind: the operator servers copy."""
        return {"captureAuthorizer": self.operator}

    # ------------------------------------------------------------ async API

    async def verify_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> VerifyResult:
        return await anyio.to_thread.run_sync(self.verify, payment, requirements)

    async def settle_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult:
        return await anyio.to_thread.run_sync(self.settle, payment, requirements)

    # ------------------------------------------------------------ Python API

    def state(self, info: PaymentInfo) -> PaymentState:
        """The escrow's ``paymentState`` of ``info`` (capturable and refundable, atomic units).

        Raises ``FacilitatorUnavailableError`` when the chain does not answer.
        """
        try:
            return self.escrow.payment_state(info)
        except ChainUnavailableError as exc:
            raise FacilitatorUnavailableError(str(exc)) from None

    def verify(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> VerifyResult:
        """Verify a client's collect payload, or a server's lifecycle payload."""
        payload = payment.payload
        payer = payload.payer if isinstance(payload, CollectPayload) else payload.info.payer
        try:
            self._verify.check_envelope(payment, requirements)
            if isinstance(payload, CollectPayload):
                info, state = self._verify.verify_collect(payload, requirements)
            else:
                info, state = self._verify.verify_lifecycle(payload, requirements)
        except Refused as exc:
            return VerifyResult(False, exc.reason, payer, exc.message)
        return VerifyResult(True, None, payer, None, self._extra(requirements, info, state))

    def settle(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult:
        """Settle whatever the payload is: authorize, capture (and void), void or refund."""
        payload = payment.payload
        if isinstance(payload, CollectPayload):
            return self.authorize(payment, requirements)
        try:
            self._verify.check_envelope(payment, requirements)
        except Refused as exc:
            return self._refusal(requirements, payload.info.payer, exc)
        if isinstance(payload, CapturePayload):
            return self.capture(payload, requirements)
        if isinstance(payload, VoidPayload):
            return self.void(payload, requirements)
        return self.refund(payload, requirements)

    def authorize(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult:
        """Place the hold: re-verify the client's payload, then collect the whole ``amount``."""
        payload = payment.payload
        if not isinstance(payload, CollectPayload):
            raise TypeError("authorize takes the client's collect payload")
        payer = payload.payer
        with self._lock:
            try:
                self._verify.check_envelope(payment, requirements)
                info = self._verify.collect_info(payload, requirements)
                key = "authorize:" + to_hex(payment_hash(requirements, info))
                fingerprint = bytes(keccak256(b"authorize" + payload.signature))
                done = self._journal.replay(key, fingerprint, self._reads.receipt)
                if done is not None:
                    return done
                self._verify.verify_collect(payload, requirements)
            except Refused as exc:
                return self._refusal(requirements, payer, exc)
            data = self.escrow.encode_authorize(
                info, requirements.amount, self.contracts.erc3009_collector, payload.signature
            )
            return self._submit(key, fingerprint, requirements, info, data, requirements.amount)

    def capture(
        self,
        payload: CapturePayload,
        requirements: AuthCaptureRequirements,
        *,
        idempotency_key: str | None = None,
    ) -> SettleResult:
        """Pay ``payload.amount`` of the hold out (then void the rest, if the payload says so)."""
        return self._lifecycle(payload, requirements, idempotency_key)

    def void(
        self,
        payload: VoidPayload,
        requirements: AuthCaptureRequirements,
        *,
        idempotency_key: str | None = None,
    ) -> SettleResult:
        """Release the whole remaining hold to the payer."""
        return self._lifecycle(payload, requirements, idempotency_key)

    def refund(
        self,
        payload: RefundPayload,
        requirements: AuthCaptureRequirements,
        *,
        idempotency_key: str | None = None,
    ) -> SettleResult:
        """Return ``payload.amount`` of what was captured, from the operator's funds."""
        return self._lifecycle(payload, requirements, idempotency_key)

    # ------------------------------------------------------------ settlement

    def _lifecycle(
        self,
        payload: LifecyclePayload,
        requirements: AuthCaptureRequirements,
        idempotency_key: str | None,
    ) -> SettleResult:
        payer = payload.info.payer
        fingerprint = bytes(keccak256(payload.type.encode() + payload.authorizer_signature))
        if isinstance(payload, CapturePayload) and payload.void_authorizer_signature is not None:
            fingerprint = bytes(keccak256(fingerprint + payload.void_authorizer_signature))
        key = idempotency_key or payload.idempotency_key or f"{payload.type}:{to_hex(fingerprint)}"
        with self._lock:
            try:
                done = self._journal.replay(key, fingerprint, self._reads.receipt)
                if done is not None:
                    return done
                info, state = self._verify.verify_lifecycle(payload, requirements)
            except Refused as exc:
                return self._refusal(requirements, payer, exc)
            if isinstance(payload, CapturePayload):
                result = self._submit(
                    key, fingerprint, requirements, info, self._verify.capture_data(payload), payload.amount,
                    record=payload.void_authorizer_signature is None,
                )  # fmt: skip
                if not result.success or payload.void_authorizer_signature is None:
                    return result
                return self._void_rest(key, fingerprint, requirements, info, result)
            if isinstance(payload, VoidPayload):
                data = self.escrow.encode_void(info)
                return self._submit(
                    key, fingerprint, requirements, info, data, state.capturable_amount
                )
            if self._reads.allowance(info.token) < payload.amount:
                approved = self._send(Call(info.token, _APPROVE + abi_encode(
                    ["address", "uint256"],
                    [checksum(self.contracts.operator_refund_collector), payload.amount],
                )))  # fmt: skip
                if not approved.ok:
                    short = Refused(ERR_REFUND_FUNDING_UNAVAILABLE, "approving the refund failed")
                    return self._refusal(requirements, payer, short)
            return self._submit(
                key,
                fingerprint,
                requirements,
                info,
                self._verify.refund_data(payload),
                payload.amount,
            )

    def _void_rest(
        self,
        key: str,
        fingerprint: bytes,
        requirements: AuthCaptureRequirements,
        info: PaymentInfo,
        captured: SettleResult,
    ) -> SettleResult:
        """The second leg of a capture-and-void; a hold emptied meanwhile means capture-only."""
        voided = self._send(Call(self.escrow.address, self.escrow.encode_void(info)))
        extra = dict(self._extra(requirements, info, self._reads.state(info)))
        if voided.ok:
            extra["voidTransaction"] = voided.tx_hash
        result = replace(captured, extra=extra)
        self._journal.remember(key, JournalEntry(fingerprint, result))
        return result

    def _submit(
        self,
        key: str,
        fingerprint: bytes,
        requirements: AuthCaptureRequirements,
        info: PaymentInfo,
        data: bytes,
        amount: int,
        *,
        record: bool = True,
    ) -> SettleResult:
        """Send one escrow call and journal its outcome (successes and pending ones only)."""
        try:
            sent = self._send(Call(self.escrow.address, data))
        except ChainUnavailableError as exc:
            raise FacilitatorUnavailableError(str(exc)) from None
        network, payer = requirements.network, info.payer
        if sent.ok and sent.tx_hash is not None:
            state = self._reads.state(info)
            result = SettleResult(
                True, network, sent.tx_hash, payer, amount,
                extra=self._extra(requirements, info, state),
            )  # fmt: skip
            if record:
                self._journal.remember(key, JournalEntry(fingerprint, result))
            return result
        if sent.reason == "receipt_timeout" and sent.tx_hash is not None:
            result = SettleResult(
                False, network, sent.tx_hash, payer, amount, ERR_SETTLEMENT_PENDING,
                "sent; no receipt yet: retry with the same idempotency key",
            )  # fmt: skip
            self._journal.remember(key, JournalEntry(fingerprint, result, sent.tx_hash))
            return result
        reason = self._reads.reason(sent.reason, sent.revert_message)
        if sent.tx_hash is not None and reason == ERR_SIMULATION_FAILED:
            reason = ERR_TRANSACTION_REVERTED
        return SettleResult(False, network, sent.tx_hash or "", payer, None, reason,
                                       "the escrow refused the call")  # fmt: skip

    # ------------------------------------------------------------ answers

    def _extra(
        self, requirements: AuthCaptureRequirements, info: PaymentInfo, state: PaymentState
    ) -> dict[str, Any]:
        return {
            "paymentInfoHash": to_hex(payment_hash(requirements, info)),
            "paymentInfo": info.to_wire(),
            "capturableAmount": str(state.capturable_amount),
            "refundableAmount": str(state.refundable_amount),
        }

    def _refusal(
        self, requirements: AuthCaptureRequirements, payer: str | None, exc: Refused
    ) -> SettleResult:
        return SettleResult(False, requirements.network, "", payer, None, exc.reason, exc.message)
