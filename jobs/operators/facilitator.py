"""The jobs' escrow calls through the x402 ``auth-capture`` facilitator instead of straight to the escrow.

:class:`FacilitatorEscrowOperator` is an :class:`~farthing.jobs.operators.escrow.EscrowOperator`:

* **authorize**: the payer's signed ``ReceiveWithAuthorization`` becomes the
  scheme's client payload (``authorization``, ``signature``, ``salt``,
  ``saltNonce``); the facilitator verifies it, then settles it (the hold);
* **capture**, **void**, **refund**: each is a server-consent payload signed
  by the receiver authorizer (``capture_payload``, ``void_payload``,
  ``refund_payload`` in ``farthing.paywall.schemes.auth_capture.consent``), settled by
  the facilitator under an idempotency key made of the job's id, the
  operation and its sequence (``job-7.capture.1.<hash>``).

The facilitator relays lifecycle calls only for a salt bound to the receiver
authorizer, so this operator chooses each payment's salt
(:meth:`payment_salt`, which the service asks for) and keeps its
``saltNonce``. What the facilitator needs for the life of a payment
(``requirements`` and ``saltNonce``) and every lifecycle payload are saved in
two small tables of this module's own, next to the jobs, **before** anything
is sent: a retry of the same step finds the same key and the same signed
payload, so the facilitator answers its first outcome and sends nothing. A
facilitator that forgot its journal (a restart) meets balances the consent
no longer expects and moves nothing (``…_unexpected_payment_state``).

The facilitator is an in-process ``AuthCaptureFacilitator`` (or a
``LocalFacilitator``, whose ``auth_capture`` is used), called directly, or
any ``AuthCaptureSettling`` such as ``RemoteFacilitator``, whose async calls
run on a private event-loop thread (:meth:`close` stops it).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from typing import Any, Final, TypeVar, cast

from anyio.from_thread import BlockingPortal, start_blocking_portal
from eth_typing import HexStr
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.exc import DBAPIError

from farthing.invariant import invariant
from farthing.jobs.tables import Job, ensure_tables
from farthing.ledger.database import LedgerDatabase
from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.schemes.auth_capture.consent import (
    capture_payload,
    refund_payload,
    void_payload,
)
from farthing.paywall.schemes.auth_capture.contract import AuthCaptureEscrow, PaymentState
from farthing.paywall.schemes.auth_capture.facilitator import (
    AuthCaptureFacilitator,
    AuthCaptureSettling,
)
from farthing.paywall.schemes.auth_capture.payment import (
    PaymentInfo,
    payment_authorization,
    salt_binding,
)
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCaptureExtra,
    AuthCapturePayment,
    AuthCaptureRequirements,
    CollectPayload,
    parse_payment,
    parse_requirements,
)
from farthing.paywall.wire import SettleResult
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.chain import TxResult
from farthing.wallet.money import Asset
from farthing.wallet.signer import Signer

__all__ = ["FACILITATOR_UNAVAILABLE", "FacilitatorEscrowOperator"]

FACILITATOR_UNAVAILABLE: Final = "facilitator_unavailable"
_SIGNING_WINDOW_MAX_S: Final = 3_600
_T = TypeVar("_T")

_metadata = MetaData()
# One row per payment this operator salted: the saltNonce, then the terms.
_payments = Table(
    "jobs_facilitator_payment",
    _metadata,
    Column("salt", String(66), primary_key=True),
    Column("salt_nonce", String(66), nullable=False),
    Column("payment_hash", String(66), nullable=True, index=True),
    Column("requirements", Text, nullable=True),  # the spec's JSON
    Column("created_ns", BigInteger, nullable=False),
)
# One row per lifecycle operation, saved before it is sent.
_operations = Table(
    "jobs_facilitator_op",
    _metadata,
    Column("idempotency_key", String(128), primary_key=True),
    Column("payment_hash", String(66), nullable=False, index=True),
    Column("operation", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("payment", Text, nullable=False),  # the paymentPayload, as sent
    Column("transaction", String(66), nullable=True),
    Column("outcome", String(128), nullable=True),  # "ok" or the facilitator's reason
    Column("attempts", Integer, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)
_jobs = Job.__table__  # type: ignore[attr-defined]


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class FacilitatorEscrowOperator:
    """The escrow operator seam served by an x402 auth-capture facilitator.

    ``authorizer`` is the receiver authorizer: it signs every capture, void
    and refund consent (the agent's key: it decides what is paid). The
    facilitator's operator (``captureAuthorizer``) sends the escrow calls;
    ``operator`` names it when the facilitator is remote (a local one knows
    its own). Refunds are relayed only for workers the facilitator has a
    refund funding agreement with (its ``refund_receivers``).
    """

    def __init__(
        self,
        facilitator: AuthCaptureFacilitator | AuthCaptureSettling,
        *,
        authorizer: Signer,
        escrow: AuthCaptureEscrow,
        asset: Asset,
        database: LedgerDatabase,
        operator: str | None = None,
    ) -> None:
        inner = getattr(facilitator, "auth_capture", None)
        self._local = (
            facilitator
            if isinstance(facilitator, AuthCaptureFacilitator)
            else inner
            if isinstance(inner, AuthCaptureFacilitator)
            else None
        )
        self._remote = facilitator
        address = operator or (self._local.operator if self._local is not None else None)
        if address is None:
            raise ValueError("name the remote facilitator's operator (its captureAuthorizer)")
        if self._local is not None and checksum(address) != self._local.operator:
            raise ValueError("operator is not the local facilitator's own")
        invariant(asset.network == escrow.chain.network, "the asset is on the escrow's chain")
        self._operator = checksum(address)
        self.authorizer = authorizer
        self.escrow = escrow
        self.asset = asset
        self.database = database
        self._stack: ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._ensure_tables()

    def __repr__(self) -> str:
        return f"FacilitatorEscrowOperator({self._operator} via {self._remote!r})"

    @property
    def address(self) -> str:
        return self._operator

    def close(self) -> None:
        """Stop the event-loop thread of a remote facilitator's calls (idempotent)."""
        if self._stack is not None:
            self._stack.close()
        self._stack = self._portal = None

    # ------------------------------------------------------------ the seam

    def payment_salt(self) -> bytes:
        """A fresh salt bound to the receiver authorizer; its ``saltNonce`` is saved first."""
        salt_nonce = secrets.token_bytes(32)
        salt = salt_binding(self.authorizer.address, ZERO_ADDRESS, salt_nonce)
        with self.database.write() as session:
            session.execute(
                _payments.insert().values(
                    salt=_hex(salt), salt_nonce=_hex(salt_nonce), created_ns=time.time_ns()
                )
            )
        return salt

    def authorize(self, info: PaymentInfo, amount: int, collector_data: bytes) -> TxResult:
        """The hold: the facilitator verifies the payer's payload, then settles it."""
        invariant(amount == info.max_amount, "the hold is the whole maxAmount")
        salt_nonce = self._salt_nonce(info)
        if salt_nonce is None:
            return TxResult(False, None, "payment_not_salted_here")
        requirements = self._requirements(info)
        payload = CollectPayload(
            payment_authorization(
                info, chain_id=self.escrow.chain.chain_id, contracts=self.escrow.contracts
            ),
            collector_data,
            info.salt,
            salt_nonce,
        )
        payment = AuthCapturePayment(requirements, payload)
        with self.database.write() as session:
            session.execute(
                update(_payments)
                .where(_payments.c.salt == _hex(info.salt))
                .values(
                    payment_hash=self._hash(info),
                    requirements=json.dumps(requirements.to_wire(), sort_keys=True),
                )
            )
        try:
            verified = self._call(self._local.verify if self._local else None,
                                  self._remote.verify_auth_capture, payment, requirements)  # fmt: skip
            if not verified.valid:
                return TxResult(False, None, verified.reason or "verify_refused")
            settled = self._call(self._local.authorize if self._local else None,
                                 self._remote.settle_auth_capture, payment, requirements)  # fmt: skip
        except FacilitatorUnavailableError:
            return self._authorize_outcome_from_chain(info)
        return self._tx(settled)

    def capture(self, info: PaymentInfo, amount: int) -> TxResult:
        return self._lifecycle(info, "capture", amount)

    def void(self, info: PaymentInfo) -> TxResult:
        return self._lifecycle(info, "void", 0)

    def refund(self, info: PaymentInfo, amount: int) -> TxResult:
        return self._lifecycle(info, "refund", amount)

    def payment_state(self, info: PaymentInfo) -> PaymentState:
        return self.escrow.payment_state(info)

    # ------------------------------------------------------------ lifecycle

    def _lifecycle(self, info: PaymentInfo, operation: str, amount: int) -> TxResult:
        terms = self._terms(info)
        if terms is None:
            return TxResult(False, None, "payment_not_authorized_here")
        requirements, salt_nonce = terms
        key = self.idempotency_key(info, operation)
        payment = self.saved_payment(key, operation, amount) or self._new_payment(
            requirements, info, salt_nonce, operation, amount, key
        )
        local = self._local
        try:
            if local is not None:
                settled = local.settle(payment, requirements)
            else:
                settled = self._call(None, self._remote.settle_auth_capture, payment, requirements)
        except FacilitatorUnavailableError:
            return TxResult(False, None, FACILITATOR_UNAVAILABLE)
        with self.database.write() as session:
            session.execute(
                update(_operations)
                .where(_operations.c.idempotency_key == key)
                .values(
                    transaction=settled.transaction or None,
                    outcome="ok" if settled.success else (settled.reason or "refused")[:128],
                    attempts=_operations.c.attempts + 1,
                )
            )
        return self._tx(settled)

    def _new_payment(
        self,
        requirements: AuthCaptureRequirements,
        info: PaymentInfo,
        salt_nonce: bytes,
        operation: str,
        amount: int,
        key: str,
    ) -> AuthCapturePayment:
        """Sign the consent against the escrow's balances now, and save it before it is sent."""
        if operation == "void":
            payload: Any = void_payload(
                self.authorizer, requirements, info, salt_nonce, idempotency_key=key
            )
        else:
            expected = self.escrow.payment_state(info)
            if operation == "capture":
                payload = capture_payload(
                    self.authorizer, requirements, info, salt_nonce, amount,
                    expected=expected, idempotency_key=key,
                )  # fmt: skip
            else:
                payload = refund_payload(
                    self.authorizer, requirements, info, salt_nonce, amount,
                    expected=expected, idempotency_key=key, contracts=self.escrow.contracts,
                )  # fmt: skip
        payment = AuthCapturePayment(requirements, payload)
        with self.database.write() as session:
            session.execute(
                _operations.insert().values(
                    idempotency_key=key,
                    payment_hash=self._hash(info),
                    operation=operation,
                    amount=amount,
                    payment=json.dumps(payment.to_wire(), sort_keys=True),
                    attempts=0,
                    created_ns=time.time_ns(),
                )
            )
        return payment

    def saved_payment(
        self, key: str, operation: str | None = None, amount: int | None = None
    ) -> AuthCapturePayment | None:
        """The payload saved under ``key`` (for this very operation and amount, when given)."""
        with self.database.read() as session:
            row = session.execute(
                select(_operations.c.operation, _operations.c.amount, _operations.c.payment).where(
                    _operations.c.idempotency_key == key
                )
            ).first()
        if row is None or operation not in (None, row.operation):
            return None
        if amount is not None and int(row.amount) != amount:
            # Another operation under this key: the facilitator answers the conflict.
            return None
        parsed = parse_payment(json.loads(row.payment))
        invariant(isinstance(parsed, AuthCapturePayment), f"the saved payload {key} parses")
        return cast(AuthCapturePayment, parsed)

    def idempotency_key(self, info: PaymentInfo, operation: str) -> str:
        """``job-<id>.<operation>.<sequence>.<payment hash prefix>`` for the job's next such step.

        The sequence comes from the job's row as the service left it: the
        hold's sequence for ``authorize``, captures so far + 1, refunds so far
        + 1, and 1 for the one ``void``. A retry of an unbooked step reads the
        same row, so it makes the same key.
        """
        payment_hash = self._hash(info)
        with self.database.read() as session:
            row = session.execute(
                select(_jobs.c.id, _jobs.c.hold_seq, _jobs.c.capture_txs, _jobs.c.refund_seq)
                .where(_jobs.c.payment_hash == payment_hash)
            ).first()  # fmt: skip
            if row is None:
                done = session.execute(
                    select(_operations.c.idempotency_key).where(
                        _operations.c.payment_hash == payment_hash,
                        _operations.c.operation == operation,
                        _operations.c.outcome == "ok",
                    )
                ).all()
                return f"payment.{operation}.{len(done) + 1}.{payment_hash[2:18]}"
        seq = {
            "authorize": int(row.hold_seq),
            "capture": len(json.loads(row.capture_txs)) + 1,
            "refund": int(row.refund_seq) + 1,
        }.get(operation, 1)
        return f"job-{row.id}.{operation}.{seq}.{payment_hash[2:18]}"

    # ------------------------------------------------------------ terms

    def _requirements(self, info: PaymentInfo) -> AuthCaptureRequirements:
        """The offer these terms make: the escrow's fields, with this operator and authorizer."""
        now = self.escrow.chain.timestamp()
        window = min(max(info.pre_approval_expiry - now, 1), _SIGNING_WINDOW_MAX_S)
        return AuthCaptureRequirements(
            network=self.escrow.chain.network,
            asset=info.token,
            amount=info.max_amount,
            pay_to=info.receiver,
            max_timeout_seconds=window,
            extra=AuthCaptureExtra(
                name=self.asset.name,
                version=self.asset.version,
                capture_authorizer=self._operator,
                capture_deadline=info.authorization_expiry,
                refund_deadline=info.refund_expiry,
                fee_recipient=info.fee_receiver,
                min_fee_bps=info.min_fee_bps,
                max_fee_bps=info.max_fee_bps,
                receiver_authorizer=self.authorizer.address,
                auth_capture_escrow=self.escrow.contracts.escrow,
            ),
        )

    def _salt_nonce(self, info: PaymentInfo) -> bytes | None:
        with self.database.read() as session:
            nonce = session.execute(
                select(_payments.c.salt_nonce).where(_payments.c.salt == _hex(info.salt))
            ).scalar_one_or_none()
        return None if nonce is None else bytes.fromhex(str(nonce)[2:])

    def _terms(self, info: PaymentInfo) -> tuple[AuthCaptureRequirements, bytes] | None:
        with self.database.read() as session:
            row = session.execute(
                select(_payments.c.salt_nonce, _payments.c.requirements).where(
                    _payments.c.salt == _hex(info.salt)
                )
            ).first()
        if row is None or row.requirements is None:
            return None
        requirements = parse_requirements(json.loads(row.requirements))
        invariant(isinstance(requirements, AuthCaptureRequirements), "the saved requirements parse")
        return cast(AuthCaptureRequirements, requirements), bytes.fromhex(row.salt_nonce[2:])

    def _hash(self, info: PaymentInfo) -> str:
        return _hex(info.hash(self.escrow.chain.chain_id, self.escrow.address))

    # ------------------------------------------------------------ outcomes

    def _tx(self, settled: SettleResult) -> TxResult:
        tx_hash = settled.transaction or None
        if settled.success:
            invariant(tx_hash is not None, "a settled operation names its transaction")
            return TxResult(True, tx_hash, block_number=self._block_of(tx_hash))
        return TxResult(False, tx_hash, settled.reason or "settle_refused", settled.message)

    def _block_of(self, tx_hash: str | None) -> int | None:
        if tx_hash is None:
            return None
        receipt = self.escrow.chain.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        return int(receipt["blockNumber"])

    def _authorize_outcome_from_chain(self, info: PaymentInfo) -> TxResult:
        """The facilitator did not answer: the escrow says whether the hold was placed."""
        if not self.escrow.payment_state(info).has_collected_payment:
            return TxResult(False, None, FACILITATOR_UNAVAILABLE)
        events = self.escrow.events(0, payment_hash=info.hash(self.escrow.chain.chain_id,
                                                                self.escrow.address))  # fmt: skip
        held = [e for e in events if e.name == "PaymentAuthorized"]
        if not held:
            return TxResult(False, None, FACILITATOR_UNAVAILABLE)
        return TxResult(True, held[-1].tx_hash, block_number=held[-1].block_number)

    def _call(
        self,
        local: Callable[[AuthCapturePayment, AuthCaptureRequirements], _T] | None,
        remote: Callable[[AuthCapturePayment, AuthCaptureRequirements], Coroutine[Any, Any, _T]],
        payment: AuthCapturePayment,
        requirements: AuthCaptureRequirements,
    ) -> _T:
        if local is not None:
            return local(payment, requirements)
        if self._portal is None:
            self._stack = ExitStack()
            self._portal = self._stack.enter_context(start_blocking_portal())
        result: _T = self._portal.call(remote, payment, requirements)
        return result

    def _ensure_tables(self) -> None:
        ensure_tables(self.database)  # the jobs' own table: keys are read from it
        for attempt in range(2):
            try:
                with self.database.write() as session:
                    _metadata.create_all(session.connection(), checkfirst=True)
                return
            except DBAPIError:
                if attempt == 1:  # PostgreSQL: another process created them first
                    raise
