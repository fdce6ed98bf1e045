"""The facilitator's half of x402 ``upto``: verify a signed ceiling, settle the actual amount.

:class:`UptoFacilitator` is the ``witness.facilitator`` the payer names
(``extra.facilitatorAddress`` in ``/supported``): the proxy lets no one else
settle.

- **verify** runs the spec's Phase 3: the checks that need no chain
  (``checks.check_terms``), then the signature against the ceiling (ECDSA, or
  ERC-1271 for a payer with code), the Permit2 nonce still unspent, the
  payer's Permit2 allowance (missing, and no gas-sponsoring extension:
  ``permit2_allowance_required``, which a seller answers with HTTP 412
  ``PERMIT2_ALLOWANCE_REQUIRED``), the balance, and a simulation of the
  proxy's ``settle`` (or ``settleWithPermit``) for the whole ceiling.
- **settle** re-verifies against the ceiling the payer signed, never the
  charge (settle-time verification), requires the charge to be at most the
  ceiling, and then: a charge of 0 sends nothing and answers success with an
  empty transaction; otherwise one ``settle`` (or ``settleWithPermit``; or
  the payer's signed ``approve`` broadcast first, its gas funded if the payer
  has none) for exactly the charge.

**A wallet not deployed yet** (ERC-6492) pays too, with an
``eip2612GasSponsoring`` permit (it cannot have approved Permit2): verify
checks both of its signatures by simulation (the shared check) and skips the
settlement's simulation (the proxy and Permit2 ask a wallet that does not
exist yet); settle first sends one Multicall3 ``aggregate3`` running the
wrapper's factory call (Multicall3 the caller, never the relayer's key; gas
estimated afresh, capped at :data:`DEPLOY_GAS_MAX`), then simulates and sends
the settlement with the inner signatures. The proxy lets only the witness's
facilitator settle, so the two cannot be one transaction: a settlement that
fails after the deployment leaves the payer's own wallet deployed, nothing
moved.

**Once.** Permit2's nonce lets an authorization move money once. Here each
``(payer, nonce)`` is journaled: a settle while another is sending it, or
after it settled, is refused without sending (``permit2_invalid_nonce``), so
no replay is ever told it paid; a settlement whose receipt did not come in
time answers ``settlement_pending`` and its retry reads the receipt instead
of sending again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import anyio.to_thread
from eth_abi.abi import decode as abi_decode

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.schemes.calldata import arg_types, encode_call
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.paywall.schemes.reverts import error_reason
from farthing.paywall.schemes.signatures import check_signature
from farthing.paywall.schemes.upto.checks import (
    check_terms,
    decode_approval,
    eip2612_digest,
    eip2612_refusal,
    erc20_approval_refusal,
    signature_refusal,
)
from farthing.paywall.schemes.upto.contract import (
    ERC20_SIGNATURES,
    PERMIT2_ADDRESS,
    PERMIT2_SIGNATURES,
    custom_error_name,
    settle_call,
    settle_with_permit_call,
)
from farthing.paywall.schemes.upto.types import (
    ERR_ALLOWANCE_REQUIRED,
    ERR_INSUFFICIENT_BALANCE,
    ERR_INVALID_SIGNATURE,
    ERR_NETWORK_MISMATCH,
    ERR_NONCE_USED,
    ERR_TRANSACTION_FAILED,
)
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.paywall.scope import SettleScope
from farthing.paywall.wire import SettleResult, VerifyResult
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.erc6492 import Wrapped, unwrap
from farthing.wallet.errors import ChainError, ChainUnavailableError
from farthing.wallet.signer import TxSigner

__all__ = ["DEPLOY_GAS_MAX", "SETTLEMENT_PENDING", "UptoFacilitator", "UptoSettling"]

SETTLEMENT_PENDING: Final = "settlement_pending"
_JOURNAL_SIZE_MAX: Final = 100_000
# The most gas the deployment of a counterfactual payer's wallet may take (a proxy's fits).
DEPLOY_GAS_MAX: Final = 1_000_000
_AGGREGATE3: Final = "aggregate3((address,bool,bytes)[])"
# Gas price headroom when funding a payer's sponsored approval: the fee it signed, at most this.
_FUNDING_WEI_MAX: Final = 10**16


@runtime_checkable
class UptoSettling(Protocol):
    """A facilitator that verifies and settles ``upto`` payments (local or remote)."""

    async def verify_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> VerifyResult: ...

    async def settle_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> SettleResult: ...


class _Send(Protocol):
    def __call__(self, call: Call, *, gas_max: int | None = None) -> TxResult: ...


def _inner(signature: bytes) -> bytes:
    """What Permit2 and the token are given: a 6492 wrapper's inner signature, else the signature."""
    wrapped = unwrap(signature)
    return wrapped.signature if isinstance(wrapped, Wrapped) else signature


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(slots=True)
class _Entry:
    state: str  # "sending" | "pending" | "settled"
    tx_hash: str | None = None
    amount: int = 0


def _refuse(refused: WireRefusal | None) -> None:
    if refused is not None:
        raise _Refused(refused.reason, refused.detail)


class UptoFacilitator:
    """Verify and settle ``upto`` payments on one chain, as the witness's facilitator.

    ``signer`` sends every settlement and pays its gas (and funds a payer's
    sponsored approval, at most :data:`_FUNDING_WEI_MAX` wei); it is never
    logged. ``send`` replaces ``chain.send`` (a shared pipelined submitter for
    the same key). ``scope`` limits the tokens and payees it settles.
    ``clock`` defaults to the chain's own: Permit2 judges deadlines by block time.
    """

    def __init__(
        self,
        chain: Chain,
        signer: TxSigner,
        *,
        scope: SettleScope | None = None,
        send: _Send | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.chain = chain
        self.network = chain.network
        self.address = checksum(signer.address)
        self.scope = scope or SettleScope()
        self._signer = signer
        self._send: _Send = send or self._chain_send
        self._clock: Callable[[], float] = clock or chain.timestamp
        self._journal: dict[tuple[str, int], _Entry] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UptoFacilitator({self.chain!r}, facilitator={self.address})"

    def _chain_send(self, call: Call, *, gas_max: int | None = None) -> TxResult:
        return self.chain.send(call, sender=self._signer, gas_limit=gas_max)

    def supported_extra(self) -> dict[str, Any]:
        """The ``extra`` of this facilitator's ``/supported`` kind: whom payers name in the witness."""
        return {"facilitatorAddress": self.address}

    # ------------------------------------------------------------ async API

    async def verify_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> VerifyResult:
        return await anyio.to_thread.run_sync(self.verify, payment, requirements)

    async def settle_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> SettleResult:
        return await anyio.to_thread.run_sync(self.settle, payment, requirements)

    # ------------------------------------------------------------ verify

    def verify(self, payment: UptoPayment, requirements: UptoRequirements) -> VerifyResult:
        """Phase 3: is this signed ceiling good for ``requirements.amount`` (the ceiling)?"""
        try:
            with self._chain_answers():
                self._check(payment, requirements, settle=False)
        except _Refused as exc:
            return VerifyResult(False, exc.reason, payment.payer, exc.message)
        return VerifyResult(True, None, payment.payer)

    def _check(self, payment: UptoPayment, requirements: UptoRequirements, *, settle: bool) -> None:
        """Every check of verify; at settle the ceiling is the signed one and the charge is simulated."""
        if requirements.network != self.network:
            raise _Refused(ERR_NETWORK_MISMATCH, f"this facilitator settles on {self.network}")
        out_of_scope = self.scope.refusal(requirements.asset, requirements.pay_to)
        if out_of_scope is not None:
            raise _Refused(*out_of_scope)
        now = int(self._clock())
        _refuse(
            check_terms(payment, requirements, facilitators=(self.address,), now=now, settle=settle)
        )
        counterfactual = self._check_signature(payment)
        auth = payment.authorization
        # (settle read the journal under its lock already; a dict lookup is atomic)
        if not settle and (auth.from_address, auth.nonce) in self._journal:
            raise _Refused(ERR_NONCE_USED, "this permit was already settled here")
        if self._nonce_used(auth.from_address, auth.nonce):
            raise _Refused(ERR_NONCE_USED, "this permit's nonce is already spent")
        allowance = self._uint(requirements.asset, "allowance", auth.from_address, PERMIT2_ADDRESS)
        sponsored = allowance < auth.amount
        if sponsored:
            self._check_sponsoring(payment, requirements, now)
        charge = requirements.amount if settle else auth.amount
        if self._uint(requirements.asset, "balanceOf", auth.from_address) < charge:
            raise _Refused(ERR_INSUFFICIENT_BALANCE, "the payer's balance does not cover it")
        if charge and not (sponsored and payment.eip2612 is None) and not counterfactual:
            # With a sponsored approve() not yet sent, or a wallet not deployed yet, the
            # simulation would fail on the allowance or the missing wallet; the checks
            # above are what can be checked (as the SDK does). Settle simulates after.
            self._simulate(payment, charge, with_permit=sponsored)

    def _check_signature(self, payment: UptoPayment) -> bool:
        """The payer's signature, or a refusal; ``True`` for a wallet to be deployed first (6492)."""
        if signature_refusal(payment, self.chain.chain_id) is None:
            return False
        # A contract wallet or an EIP-7702 account: ERC-1271, as Permit2 asks it; one not
        # deployed yet: ERC-6492 by simulation; gas-bounded (farthing.paywall.schemes.signatures).
        digest = payment.authorization.digest(self.chain.chain_id)
        check = check_signature(self.chain, payment.payer, digest, payment.signature)
        if check.valid:
            return check.deployment is not None
        raise _Refused(ERR_INVALID_SIGNATURE, "the signature is not the payer's")

    def _check_sponsoring(
        self, payment: UptoPayment, requirements: UptoRequirements, now: int
    ) -> None:
        if payment.eip2612 is not None:
            refused = eip2612_refusal(payment.eip2612, payment, requirements, now)
            if refused is not None and refused.reason == "eip2612_invalid_signature":
                # Not a key's: asked of the payer's wallet, as the token's permit asks it.
                permit = payment.eip2612
                name, version = requirements.token_name or "", requirements.token_version or ""
                digest = eip2612_digest(permit, name, version, requirements.chain_id)
                if check_signature(self.chain, payment.payer, digest, permit.signature).valid:
                    refused = None
            _refuse(refused)
            nonce = self._uint(requirements.asset, "nonces", payment.payer)
            if payment.eip2612.nonce != nonce:
                raise _Refused("eip2612_nonce_mismatch", "the permit's nonce is not the token's")
            return
        if payment.erc20_approval is not None:
            _refuse(erc20_approval_refusal(payment.erc20_approval, payment, requirements))
            tx = decode_approval(payment.erc20_approval.signed_transaction)
            if isinstance(tx, WireRefusal):
                raise _Refused(tx.reason, tx.detail)
            expected = int(
                self.chain.w3.eth.get_transaction_count(checksum(payment.payer), "pending")
            )
            if tx.nonce != expected:
                raise _Refused("erc20_approval_tx_nonce_mismatch", "the approval's nonce is stale")
            if tx.gas * tx.max_fee_per_gas > _FUNDING_WEI_MAX:
                raise _Refused("erc20_approval_tx_fee_too_high", "the approval's fee is too high")
            base_fee = int(self.chain.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            if tx.max_fee_per_gas < base_fee:
                # The node would refuse it after the funding: the payer would keep the gas money.
                raise _Refused(
                    "erc20_approval_tx_fee_too_low", "the approval's fee is below the base fee"
                )
            return
        raise _Refused(ERR_ALLOWANCE_REQUIRED, "the payer has not approved Permit2 for this token")

    def _simulate(self, payment: UptoPayment, amount: int, *, with_permit: bool) -> None:
        result = self.chain.call(
            self._settle_call(payment, amount, with_permit), sender=self.address
        )
        if not result.ok:
            name = custom_error_name(result.revert_message)
            reason = ERR_TRANSACTION_FAILED
            if name == "InvalidNonce":
                reason = ERR_NONCE_USED
            elif name is not None:
                reason = "permit2_" + error_reason(name)
            raise _Refused(reason, f"the settlement would revert: {name or result.reason}")

    # ------------------------------------------------------------ settle

    def settle(self, payment: UptoPayment, requirements: UptoRequirements) -> SettleResult:
        """Phase 4: move ``requirements.amount`` (at most the signed ceiling); 0 sends nothing."""
        key = (payment.payer, payment.authorization.nonce)
        with self._lock:
            entry = self._journal.get(key)
            if entry is not None and entry.state == "pending" and entry.tx_hash is not None:
                return self._resolve_pending(key, entry, payment, requirements)
            if entry is not None:
                return self._failure(payment, ERR_NONCE_USED, "this permit was already settled")
            try:
                with self._chain_answers():
                    self._check(payment, requirements, settle=True)
            except _Refused as exc:
                return self._failure(payment, exc.reason, exc.message)
            if requirements.amount == 0:
                # Nothing moves: the authorization is left to expire; it is spent here all the same.
                self._remember(key, _Entry("settled"))
                return SettleResult(True, self.network, "", payment.payer, 0)
            self._remember(key, _Entry("sending", amount=requirements.amount))
        try:
            result = self._submit(payment, requirements.amount)
        except ChainUnavailableError as exc:
            with self._lock:
                self._journal.pop(key, None)  # nothing was sent, or it is resolved by the nonce
            raise FacilitatorUnavailableError(str(exc)) from None
        with self._lock:
            if result.ok and result.tx_hash is not None:
                self._journal[key] = _Entry("settled", result.tx_hash, requirements.amount)
                return SettleResult(
                    True, self.network, result.tx_hash, payment.payer, requirements.amount,
                    block_number=result.block_number,
                )  # fmt: skip
            if result.reason == "receipt_timeout" and result.tx_hash is not None:
                self._journal[key] = _Entry("pending", result.tx_hash, requirements.amount)
                return SettleResult(
                    False, self.network, result.tx_hash, payment.payer, requirements.amount,
                    reason=SETTLEMENT_PENDING, pending=True,
                )  # fmt: skip
            self._journal.pop(key, None)
        name = custom_error_name(result.revert_message)
        reason = ERR_NONCE_USED if name == "InvalidNonce" else ERR_TRANSACTION_FAILED
        return self._failure(payment, reason, name or result.reason or "reverted")

    def _submit(self, payment: UptoPayment, amount: int) -> TxResult:
        approval = payment.erc20_approval
        allowance = self._uint(payment.accepted.asset, "allowance", payment.payer, PERMIT2_ADDRESS)
        sponsored = allowance < payment.authorization.amount
        if sponsored and payment.eip2612 is None and approval is not None:
            approved = self._broadcast_approval(payment)
            if not approved.ok:
                return approved
        with_permit = sponsored and payment.eip2612 is not None
        wrapped = unwrap(payment.signature)
        if isinstance(wrapped, Wrapped) and not self.chain.code_at(payment.payer):
            deployed = self._deploy(payment, wrapped)
            if not deployed.ok:
                return deployed
            simulated = self.chain.call(
                self._settle_call(payment, amount, with_permit), sender=self.address
            )
            if not simulated.ok:
                return TxResult(False, None, "reverted", simulated.revert_message)
        return self._send(self._settle_call(payment, amount, with_permit))

    def _deploy(self, payment: UptoPayment, wrapped: Wrapped) -> TxResult:
        """Deploy a counterfactual payer's wallet through Multicall3 (never the relayer as caller)."""
        if not self.chain.code_at(MULTICALL3_ADDRESS):
            return TxResult(False, None, "no_multicall3", "no Multicall3 to deploy the wallet")
        data = encode_call(
            _AGGREGATE3,
            ["(address,bool,bytes)[]"],
            [[(wrapped.factory, False, wrapped.factory_calldata)]],
        )
        deployed = self._send(Call(MULTICALL3_ADDRESS, data), gas_max=DEPLOY_GAS_MAX)
        if deployed.ok and not self.chain.code_at(payment.payer):
            return TxResult(False, deployed.tx_hash, "erc6492_not_deployed")
        return deployed

    def _broadcast_approval(self, payment: UptoPayment) -> TxResult:
        """Fund the payer's gas if it has too little, then send its signed ``approve``."""
        approval = payment.erc20_approval
        assert approval is not None
        tx = decode_approval(approval.signed_transaction)
        if isinstance(tx, WireRefusal):
            return TxResult(False, None, tx.reason)
        need = tx.gas * tx.max_fee_per_gas
        have = self.chain.native_balance(payment.payer)
        if have < need:
            funded = self._send(Call(payment.payer, b"", need - have))
            if not funded.ok:
                return funded
        w3 = self.chain.w3
        try:
            tx_hash = w3.eth.send_raw_transaction(approval.signed_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        except ChainUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - the node's refusal of a client's transaction
            return TxResult(False, None, "erc20_approval_broadcast_failed", str(exc)[:200])
        if int(receipt["status"]) != 1:
            return TxResult(False, "0x" + bytes(tx_hash).hex(), "erc20_approval_tx_failed")
        return TxResult(True, "0x" + bytes(tx_hash).hex())

    def _resolve_pending(
        self,
        key: tuple[str, int],
        entry: _Entry,
        payment: UptoPayment,
        requirements: UptoRequirements,
    ) -> SettleResult:
        assert entry.tx_hash is not None
        try:
            receipt = self.chain.w3.eth.get_transaction_receipt(entry.tx_hash)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - not found yet
            receipt = None
        if receipt is None:
            return SettleResult(
                False, self.network, entry.tx_hash, payment.payer, entry.amount,
                reason=SETTLEMENT_PENDING, pending=True,
            )  # fmt: skip
        if int(receipt["status"]) == 1:
            self._journal[key] = _Entry("settled", entry.tx_hash, entry.amount)
            return SettleResult(True, self.network, entry.tx_hash, payment.payer, entry.amount)
        self._journal.pop(key, None)
        return self._failure(payment, ERR_TRANSACTION_FAILED, "the settlement reverted")

    # ------------------------------------------------------------ helpers

    def _settle_call(self, payment: UptoPayment, amount: int, with_permit: bool) -> Call:
        auth = payment.authorization
        if with_permit and payment.eip2612 is not None:
            permit = payment.eip2612
            sig = _inner(permit.signature)
            r, s, v = sig[:32], sig[32:64], sig[64] if len(sig) == 65 else 0
            return settle_with_permit_call(
                (permit.amount, permit.deadline, r, s, v),
                auth.permit_args(), amount, auth.from_address, auth.witness_args(),
                _inner(payment.signature),
            )  # fmt: skip
        return settle_call(
            auth.permit_args(),
            amount,
            auth.from_address,
            auth.witness_args(),
            _inner(payment.signature),
        )

    def _uint(self, to: str, name: str, *args: Any) -> int:
        signature = ERC20_SIGNATURES[name]
        result = self.chain.call(Call(to, encode_call(signature, arg_types(signature), list(args))))
        if not result.ok or len(result.return_data) < 32:
            raise _Refused(ERR_TRANSACTION_FAILED, f"the token did not answer {name}()")
        return int(abi_decode(["uint256"], result.return_data[:32])[0])

    def _nonce_used(self, owner: str, nonce: int) -> bool:
        signature = PERMIT2_SIGNATURES["nonceBitmap"]
        data = encode_call(signature, arg_types(signature), [owner, nonce >> 8])
        result = self.chain.call(Call(PERMIT2_ADDRESS, data))
        if not result.ok or len(result.return_data) < 32:
            raise _Refused(ERR_TRANSACTION_FAILED, "Permit2 did not answer nonceBitmap()")
        bitmap = int(abi_decode(["uint256"], result.return_data[:32])[0])
        return bool(bitmap >> (nonce & 0xFF) & 1)

    def _failure(self, payment: UptoPayment, reason: str, message: str) -> SettleResult:
        return SettleResult(False, self.network, "", payment.payer, reason=reason, message=message)

    def _remember(self, key: tuple[str, int], entry: _Entry) -> None:
        if len(self._journal) >= _JOURNAL_SIZE_MAX:
            settled = [k for k, e in self._journal.items() if e.state == "settled"]
            for old in settled[: len(settled) // 2 or 1]:
                del self._journal[old]
        self._journal[key] = entry

    @contextmanager
    def _chain_answers(self) -> Iterator[None]:
        """A chain outage is ``FacilitatorUnavailableError`` (a 503), never a refusal."""
        try:
            yield
        except ChainUnavailableError as exc:
            raise FacilitatorUnavailableError(str(exc)) from None
        except ChainError as exc:
            raise _Refused(ERR_TRANSACTION_FAILED, str(exc)) from None
