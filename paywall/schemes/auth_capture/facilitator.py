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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, runtime_checkable

import anyio.to_thread
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from web3.exceptions import TransactionNotFound

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.schemes.auth_capture.checks import (
    check_capture,
    check_collect,
    check_lifecycle,
    check_refund,
    check_void,
    collect_info,
)
from farthing.paywall.schemes.auth_capture.consent import payment_hash
from farthing.paywall.schemes.auth_capture.contract import (
    AuthCaptureEscrow,
    PaymentState,
    custom_error_name,
)
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.paywall.schemes.auth_capture.types import (
    ERR_IDEMPOTENCY_CONFLICT,
    ERR_INSUFFICIENT_BALANCE,
    ERR_NETWORK_MISMATCH,
    ERR_OPERATOR_NOT_ADMITTED,
    ERR_PAYMENT_ALREADY_COLLECTED,
    ERR_REFUND_FUNDING_UNAVAILABLE,
    ERR_SETTLEMENT_PENDING,
    ERR_SIMULATION_FAILED,
    ERR_TRANSACTION_REVERTED,
    ESCROW_ERROR_REASONS,
    AuthCaptureVerifyResult,
    WireRefusal,
)
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCapturePayment,
    AuthCaptureRequirements,
    CapturePayload,
    CollectPayload,
    RefundPayload,
    VoidPayload,
)
from farthing.paywall.scope import SettleScope
from farthing.paywall.wire import SettleResult
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.eip712 import (
    keccak256,
)
from farthing.wallet.errors import ChainError, ChainUnavailableError
from farthing.wallet.networks import CANONICAL_AUTH_CAPTURE_CONTRACTS, AuthCaptureContracts
from farthing.wallet.signer import TxSigner

__all__ = [
    "JOURNAL_SIZE_MAX",
    "AuthCaptureFacilitator",
    "AuthCaptureSettling",
]

JOURNAL_SIZE_MAX: Final = 100_000

_BALANCE_OF: Final = bytes(keccak256(b"balanceOf(address)"))[:4]
_ALLOWANCE: Final = bytes(keccak256(b"allowance(address,address)"))[:4]
_APPROVE: Final = bytes(keccak256(b"approve(address,uint256)"))[:4]

LifecyclePayload = CapturePayload | VoidPayload | RefundPayload


@runtime_checkable
class AuthCaptureSettling(Protocol):
    """A facilitator that verifies and settles auth-capture payloads (local or remote)."""

    async def verify_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> AuthCaptureVerifyResult: ...

    async def settle_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult: ...


class _Refused(Exception):
    """Internal: unwinds a check to its entry point, where it becomes a refusal value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes  # what the operation was: a different one may not reuse the key
    result: SettleResult
    pending_tx: str | None = None  # sent, receipt not seen yet


def _refuse(refusal: WireRefusal | None) -> None:
    if refusal is not None:
        raise _Refused(refusal.reason, refusal.detail)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return out.lstrip("_")


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
        self._journal: dict[str, _Entry] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"AuthCaptureFacilitator({self.chain!r}, operator={self.operator})"

    def supported_extra(self) -> dict[str, Any]:
        """The ``extra`` of this facilitator's ``/supported`` kind: the operator servers copy."""
        return {"captureAuthorizer": self.operator}

    # ------------------------------------------------------------ async API

    async def verify_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> AuthCaptureVerifyResult:
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

    def _state(self, info: PaymentInfo) -> PaymentState:
        state: PaymentState = self._chain_read(lambda: self.escrow.payment_state(info))
        return state

    def verify(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> AuthCaptureVerifyResult:
        """Verify a client's collect payload, or a server's lifecycle payload."""
        payload = payment.payload
        payer = payload.payer if isinstance(payload, CollectPayload) else payload.info.payer
        try:
            self._check_envelope(payment, requirements)
            if isinstance(payload, CollectPayload):
                info, state = self._verify_collect(payload, requirements)
            else:
                info, state = self._verify_lifecycle(payload, requirements)
        except _Refused as exc:
            return AuthCaptureVerifyResult(False, exc.reason, payer, exc.message)
        return AuthCaptureVerifyResult(
            True, None, payer, None, self._extra(requirements, info, state)
        )

    def settle(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult:
        """Settle whatever the payload is: authorize, capture (and void), void or refund."""
        payload = payment.payload
        if isinstance(payload, CollectPayload):
            return self.authorize(payment, requirements)
        try:
            self._check_envelope(payment, requirements)
        except _Refused as exc:
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
                self._check_envelope(payment, requirements)
                info = self._collect_info(payload, requirements)
                key = "authorize:" + _hex(payment_hash(requirements, info))
                fingerprint = bytes(keccak256(b"authorize" + payload.signature))
                done = self._replay(key, fingerprint)
                if done is not None:
                    return done
                self._verify_collect(payload, requirements)
            except _Refused as exc:
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

    # ------------------------------------------------------------ checks

    def _now(self) -> int:
        return int(self._clock())

    def _check_envelope(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> None:
        """The spec's checks 2-5 (scheme and extra were checked by the parser)."""
        if payment.accepted.network != requirements.network:
            raise _Refused(ERR_NETWORK_MISMATCH, "paid on another network than the offer's")
        if requirements.network != self.network:
            raise _Refused(ERR_NETWORK_MISMATCH, f"this facilitator settles on {self.network}")
        if requirements.extra.capture_authorizer != self.operator:
            raise _Refused(
                ERR_OPERATOR_NOT_ADMITTED,
                f"captureAuthorizer must be this facilitator's operator {self.operator}",
            )
        outside = self.scope.refusal(requirements.asset, requirements.pay_to)
        if outside is not None:
            raise _Refused(*outside)

    def _collect_info(
        self, payload: CollectPayload, requirements: AuthCaptureRequirements
    ) -> PaymentInfo:
        info = collect_info(payload, requirements)
        if isinstance(info, WireRefusal):
            raise _Refused(info.reason, info.detail)
        return info

    def _verify_collect(
        self, payload: CollectPayload, requirements: AuthCaptureRequirements
    ) -> tuple[PaymentInfo, PaymentState]:
        info = self._collect_info(payload, requirements)
        code = self._chain_read(lambda: self.chain.code_at(payload.payer))
        _refuse(
            check_collect(
                payload,
                requirements,
                info,
                now=self._now(),
                collector=self.contracts.erc3009_collector,
                payer_is_contract=bool(code),
            )
        )
        nonce = payload.authorization.nonce
        used = self._chain_read(
            lambda: self.chain.authorization_state(requirements.asset, payload.payer, nonce)
        )
        if used:
            raise _Refused(ERR_PAYMENT_ALREADY_COLLECTED, "this authorization was already used")
        if self._balance(requirements.asset, payload.payer) < requirements.amount:
            raise _Refused(ERR_INSUFFICIENT_BALANCE, "the payer's balance is below the amount")
        data = self.escrow.encode_authorize(
            info, requirements.amount, self.contracts.erc3009_collector, payload.signature
        )
        self._simulate(data)
        return info, self._state(info)

    def _verify_lifecycle(
        self, payload: LifecyclePayload, requirements: AuthCaptureRequirements
    ) -> tuple[PaymentInfo, PaymentState]:
        info = payload.info
        refund_collector = self.contracts.operator_refund_collector
        _refuse(check_lifecycle(payload, requirements, refund_collector=refund_collector))
        state = self._state(info)
        if isinstance(payload, CapturePayload):
            _refuse(check_capture(payload, info, state, now=self._now()))
            self._simulate(self._capture_data(payload))
        elif isinstance(payload, VoidPayload):
            _refuse(check_void(state))
            self._simulate(self.escrow.encode_void(info))
        else:
            _refuse(check_refund(payload, info, state, now=self._now()))
            if info.receiver not in self.refund_receivers:
                raise _Refused(
                    ERR_REFUND_FUNDING_UNAVAILABLE, "no refund funding agreement with this receiver"
                )
            if self._balance(info.token, self.operator) < payload.amount:
                raise _Refused(
                    ERR_REFUND_FUNDING_UNAVAILABLE, "the operator's refund funds are short"
                )
            if self._allowance(info.token) >= payload.amount:
                self._simulate(self._refund_data(payload))
        return info, state

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
        key = idempotency_key or payload.idempotency_key or f"{payload.type}:{_hex(fingerprint)}"
        with self._lock:
            try:
                done = self._replay(key, fingerprint)
                if done is not None:
                    return done
                info, state = self._verify_lifecycle(payload, requirements)
            except _Refused as exc:
                return self._refusal(requirements, payer, exc)
            if isinstance(payload, CapturePayload):
                result = self._submit(
                    key, fingerprint, requirements, info, self._capture_data(payload), payload.amount,
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
            if self._allowance(info.token) < payload.amount:
                approved = self._send(Call(info.token, _APPROVE + abi_encode(
                    ["address", "uint256"],
                    [checksum(self.contracts.operator_refund_collector), payload.amount],
                )))  # fmt: skip
                if not approved.ok:
                    short = _Refused(ERR_REFUND_FUNDING_UNAVAILABLE, "approving the refund failed")
                    return self._refusal(requirements, payer, short)
            return self._submit(
                key, fingerprint, requirements, info, self._refund_data(payload), payload.amount
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
        extra = dict(self._extra(requirements, info, self._state(info)))
        if voided.ok:
            extra["voidTransaction"] = voided.tx_hash
        result = replace(captured, extra=extra)
        self._remember(key, _Entry(fingerprint, result))
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
            state = self._state(info)
            result = SettleResult(
                True, network, sent.tx_hash, payer, amount,
                extra=self._extra(requirements, info, state),
            )  # fmt: skip
            if record:
                self._remember(key, _Entry(fingerprint, result))
            return result
        if sent.reason == "receipt_timeout" and sent.tx_hash is not None:
            result = SettleResult(
                False, network, sent.tx_hash, payer, amount, ERR_SETTLEMENT_PENDING,
                "sent; no receipt yet: retry with the same idempotency key",
            )  # fmt: skip
            self._remember(key, _Entry(fingerprint, result, sent.tx_hash))
            return result
        reason = self._reason(sent.reason, sent.revert_message)
        if sent.tx_hash is not None and reason == ERR_SIMULATION_FAILED:
            reason = ERR_TRANSACTION_REVERTED
        return SettleResult(False, network, sent.tx_hash or "", payer, None, reason,
                                       "the escrow refused the call")  # fmt: skip

    def _replay(self, key: str, fingerprint: bytes) -> SettleResult | None:
        """The first outcome under ``key``; ``None`` when there is none to replay."""
        entry = self._journal.get(key)
        if entry is None:
            return None
        if entry.fingerprint != fingerprint:
            raise _Refused(
                ERR_IDEMPOTENCY_CONFLICT, "this idempotency key belongs to another operation"
            )
        if entry.pending_tx is None:
            return entry.result
        receipt = self._receipt(entry.pending_tx)
        if receipt is None:
            return entry.result  # still pending: never send twice
        if int(receipt.get("status", 0)) == 1:
            resolved = replace(entry.result, success=True, reason=None, message=None)
            self._journal[key] = _Entry(fingerprint, resolved)
            return resolved
        del self._journal[key]  # reverted: nothing moved, the caller may try again
        return None

    def _remember(self, key: str, entry: _Entry) -> None:
        if len(self._journal) >= JOURNAL_SIZE_MAX:
            self._journal.pop(next(iter(self._journal)))
        self._journal[key] = entry

    # ------------------------------------------------------------ chain helpers

    def _capture_data(self, payload: CapturePayload) -> bytes:
        return self.escrow.encode_capture(
            payload.info, payload.amount, payload.fee_amount, payload.fee_receiver
        )

    def _refund_data(self, payload: RefundPayload) -> bytes:
        return self.escrow.encode_refund(
            payload.info, payload.amount, self.contracts.operator_refund_collector, b""
        )

    def _simulate(self, data: bytes) -> None:
        result = self._chain_read(
            lambda: self.chain.call(Call(self.escrow.address, data), sender=self.operator)
        )
        if not result.ok:
            raise _Refused(self._reason(result.reason, result.revert_message),
                           "the simulation reverted")  # fmt: skip

    @staticmethod
    def _reason(reason: str | None, revert_message: str | None) -> str:
        name = custom_error_name(revert_message)
        key = _snake(name) if name is not None else (reason or "")
        return ESCROW_ERROR_REASONS.get(key, ERR_SIMULATION_FAILED)

    def _balance(self, token: str, owner: str) -> int:
        data = _BALANCE_OF + abi_encode(["address"], [checksum(owner)])
        result = self._chain_read(lambda: self.chain.call(Call(checksum(token), data)))
        if not result.ok:
            raise _Refused(ERR_SIMULATION_FAILED, "the token has no balanceOf")
        return int(abi_decode(["uint256"], result.return_data)[0])

    def _allowance(self, token: str) -> int:
        """What the refund collector may still pull from the operator."""
        spender = checksum(self.contracts.operator_refund_collector)
        data = _ALLOWANCE + abi_encode(["address", "address"], [self.operator, spender])
        result = self._chain_read(lambda: self.chain.call(Call(checksum(token), data)))
        if not result.ok:
            raise _Refused(ERR_REFUND_FUNDING_UNAVAILABLE, "the token has no allowance")
        return int(abi_decode(["uint256"], result.return_data)[0])

    def _receipt(self, tx_hash: str) -> Mapping[str, Any] | None:
        try:
            receipt = self._chain_read(lambda: self.chain.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return dict(receipt) if receipt is not None else None

    def _chain_read(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except ChainUnavailableError as exc:
            raise FacilitatorUnavailableError(str(exc)) from None
        except ChainError as exc:
            raise _Refused(ERR_SIMULATION_FAILED, str(exc)) from None

    def _extra(
        self, requirements: AuthCaptureRequirements, info: PaymentInfo, state: PaymentState
    ) -> dict[str, Any]:
        return {
            "paymentInfoHash": _hex(payment_hash(requirements, info)),
            "paymentInfo": info.to_wire(),
            "capturableAmount": str(state.capturable_amount),
            "refundableAmount": str(state.refundable_amount),
        }

    def _refusal(
        self, requirements: AuthCaptureRequirements, payer: str | None, exc: _Refused
    ) -> SettleResult:
        return SettleResult(False, requirements.network, "", payer, None, exc.reason, exc.message)
