"""The facilitator: verify a payment, then settle it on-chain.

:class:`Facilitator` is the seam (x402's ``FacilitatorClient`` shape, async;
``farthing.paywall.seam``).
:class:`LocalFacilitator` is the in-process default: it reads and writes the
chain through ``farthing.wallet`` and answers with values.

Verify checks, cheapest first, and answers with the first snake_case reason
that applies: ``unsupported_scheme``, ``network_mismatch``,
``network_not_supported``, ``asset_not_supported`` and ``payee_not_allowed``
(outside the facilitator's scope), ``asset_mismatch``, ``eip712_domain_mismatch``,
``pay_to_mismatch``, ``amount_mismatch``, ``authorization_expired`` (fewer
than ``valid_before_margin_s`` seconds left, so it could expire before it is
settled), ``authorization_not_yet_valid``, ``authorization_valid_too_long``
(``validBefore`` later than now + ``maxTimeoutSeconds`` +
``VALID_BEFORE_SKEW_S``: a payer must not hand out an authorization that
stays spendable for years), ``invalid_signature`` (fast path),
``nonce_already_used`` (locally, then on-chain) and ``insufficient_balance``.

Settle never double-charges. Before every submission it re-reads the
authorization's state on-chain. A submission whose receipt does not arrive in
time is recorded as *pending* with its transaction hash and answered with
``settlement_pending``; a later settle of the same authorization resolves it
from the chain (the receipt, or the token's ``AuthorizationUsed`` log) and
resubmits only if the nonce is still unused. An EIP-3009 nonce can move money
once, so resubmitting the same authorization can never charge twice; and a
settle answers ``success`` at most once per authorization, so no replay is
ever told it paid.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

import anyio.to_thread

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.facilitator.onchain import (
    chain_outage,
    failed,
    find_use,
    paid_by,
    receipt_of,
    settle_outcome,
    waiting,
)
from farthing.paywall.facilitator.submit import SharedNonces, Submitter
from farthing.paywall.schemes.auth_capture.facilitator import AuthCaptureFacilitator
from farthing.paywall.schemes.auth_capture.types import ERR_SCHEME as AUTH_CAPTURE_ERR_SCHEME
from farthing.paywall.schemes.auth_capture.wire import AuthCapturePayment, AuthCaptureRequirements
from farthing.paywall.schemes.batch_settlement.facilitator import ChannelFacilitator
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment, ChannelRequirements
from farthing.paywall.schemes.exact.payers import contract_wallet_refusal, settlement_call
from farthing.paywall.schemes.exact.terms import VALID_BEFORE_SKEW_S, check_terms
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.paywall.scope import SettleScope
from farthing.paywall.seam import Facilitator, ResolvingFacilitator, Supported
from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequirements,
    SettleResult,
    VerifyResult,
)
from farthing.wallet.chain import Chain
from farthing.wallet.errors import ChainError, ChainUnavailableError
from farthing.wallet.money import Asset
from farthing.wallet.signer import Signer, TxSigner
from farthing.wallet.token import Stablecoin

__all__ = [
    "VALID_BEFORE_MARGIN_S_DEFAULT",
    "VALID_BEFORE_SKEW_S",
    "Facilitator",
    "LocalFacilitator",
    "ResolvingFacilitator",
    "Supported",
    "check_terms",
]

# Time the payment must still be valid for after verify: the handler runs and
# the settlement is mined inside it. x402's own facilitator uses 6 s.
VALID_BEFORE_MARGIN_S_DEFAULT: Final = 10
_JOURNAL_SIZE_MAX: Final = 100_000
_NO_AUTH_CAPTURE: Final = "this facilitator has no auth-capture operator"


@dataclass(slots=True)
class _Entry:
    state: str  # "sending" | "pending" | "settled"
    tx_hash: str | None
    valid_before: int


class LocalFacilitator:
    """Verifies and settles on the chain this process is connected to.

    ``signer`` pays the gas of settlements and is never logged. ``assets`` and
    ``payees``, if given, limit which tokens are accepted and whom they may pay,
    in every scheme (``farthing.paywall.scope``). ``nonce_store`` (the paywall's
    ``PaymentStore``) lets several processes settle with the same key: its
    nonces are allocated in that shared database (``farthing.paywall.facilitator.submit``).
    """

    def __init__(
        self,
        chain: Chain,
        signer: TxSigner,
        *,
        assets: tuple[Asset, ...] = (),
        payees: Collection[str] = (),
        valid_before_margin_s: int = VALID_BEFORE_MARGIN_S_DEFAULT,
        log_lookback_blocks: int = 10_000,
        clock: Callable[[], float] = time.time,
        nonce_store: SharedNonces | None = None,
        channel_authorizer: Signer | None = None,
        auth_capture_operator: TxSigner | None = None,
        auth_capture_refund_receivers: Collection[str] = (),
    ) -> None:
        if not 0 <= valid_before_margin_s <= 3600:
            raise ValueError("valid_before_margin_s must be between 0 and 3600")
        self.chain = chain
        self.network = chain.network
        self._signer = signer
        self.scope = SettleScope.of((a.address for a in assets), payees)
        self._margin_s = valid_before_margin_s
        self._lookback = log_lookback_blocks
        self._clock = clock
        self._journal: dict[tuple[str, str, bytes], _Entry] = {}
        # Over RPC, settlements pipeline through one local nonce; the in-process
        # chain mines synchronously and keeps the wallet's simpler send.
        self._submitter = (
            Submitter(chain, signer, shared=nonce_store) if chain.backend == "rpc" else None
        )
        self._lock = threading.Lock()
        # batch-settlement (farthing.paywall.schemes.batch_settlement.facilitator), on the same
        # key and, over RPC, the same nonce sequence.
        self.channels = ChannelFacilitator(
            chain,
            signer,
            authorizer=channel_authorizer,
            send=self._submitter.send if self._submitter is not None else None,
            clock=clock,
            scope=self.scope,
        )
        # auth-capture (farthing.paywall.schemes.auth_capture.facilitator), only with an
        # operator key; the same key as ``signer`` shares its nonce sequence.
        shared = (
            self._submitter is not None
            and auth_capture_operator is not None
            and (auth_capture_operator.address == signer.address)
        )
        self.auth_capture = (
            AuthCaptureFacilitator(
                chain,
                auth_capture_operator,
                refund_receivers=auth_capture_refund_receivers,
                scope=self.scope,
                send=self._submitter.send if shared and self._submitter is not None else None,
            )
            if auth_capture_operator is not None
            else None
        )

        # upto (farthing.paywall.schemes.upto.facilitator): the settling key is the
        # facilitatorAddress payers name in the witness; same nonce sequence over RPC.
        self.upto = UptoFacilitator(
            chain,
            signer,
            scope=self.scope,
            send=self._submitter.send if self._submitter is not None else None,
        )

    def __repr__(self) -> str:
        return f"LocalFacilitator({self.chain!r}, signer={self._signer.address})"

    async def verify_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> VerifyResult:
        return await self.upto.verify_upto(payment, requirements)

    async def settle_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> SettleResult:
        return await self.upto.settle_upto(payment, requirements)

    async def verify_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> VerifyResult:
        return await self.channels.verify_channel(payment, requirements)

    async def settle_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> SettleResult:
        return await self.channels.settle_channel(payment, requirements)

    async def verify_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> VerifyResult:
        if self.auth_capture is None:
            return VerifyResult(False, AUTH_CAPTURE_ERR_SCHEME, None, _NO_AUTH_CAPTURE)
        return await self.auth_capture.verify_auth_capture(payment, requirements)

    async def settle_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult:
        if self.auth_capture is None:
            return SettleResult(
                False,
                requirements.network,
                reason=AUTH_CAPTURE_ERR_SCHEME,
                message=_NO_AUTH_CAPTURE,
            )
        return await self.auth_capture.settle_auth_capture(payment, requirements)

    # ------------------------------------------------------------ async API

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResult:
        return await anyio.to_thread.run_sync(self.verify_sync, payload, requirements)

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResult:
        return await anyio.to_thread.run_sync(self.settle_sync, payload, requirements)

    async def supported(self) -> Supported:
        operator = self.auth_capture
        signers: tuple[str, ...] = (self._signer.address,)
        if operator is not None and operator.operator != self._signer.address:
            signers += (operator.operator,)
        return Supported(
            (self.network,),
            signers,
            (self.network,),
            self.channels.supported_extra(),
            (self.network,) if operator is not None else (),
            operator.supported_extra() if operator is not None else None,
        )

    async def resolve(
        self, requirements: PaymentRequirements, payer: str, nonce: bytes, tx_hash: str | None
    ) -> SettleResult | None:
        return await anyio.to_thread.run_sync(
            self.resolve_sync, requirements, payer, nonce, tx_hash
        )

    # ------------------------------------------------------------ verify

    def verify_sync(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResult:
        refused = self._local_checks(payload, requirements)
        if refused is not None:
            return refused
        payer = payload.payer
        token = self._token(requirements)
        with chain_outage(self.chain):
            try:
                used, balance = token.payer_state(payer, payload.authorization.nonce)
            except ChainError as exc:
                if isinstance(exc, ChainUnavailableError):
                    raise
                return VerifyResult(False, "asset_not_supported", payer, str(exc))
        if used:
            return VerifyResult(
                False, "nonce_already_used", payer, "this authorization was already used"
            )
        if balance < requirements.amount:
            return VerifyResult(
                False,
                "insufficient_balance",
                payer,
                f"the payer holds {balance} of {requirements.amount}",
            )
        return VerifyResult(True, None, payer)

    def _local_checks(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResult | None:
        payer = payload.payer
        if requirements.network != self.network:
            return VerifyResult(
                False,
                "network_not_supported",
                payer,
                f"this facilitator settles on {self.network} only",
            )
        outside = self.scope.refusal(requirements.asset, requirements.pay_to)
        if outside is not None:
            return VerifyResult(False, outside[0], payer, outside[1])
        refused = check_terms(
            payload, requirements, now=int(self._clock()), margin_s=self._margin_s
        )
        if refused is not None and refused.reason == "authorization_valid_too_long":
            # Payers may sign on the chain's clock, which a dev chain can run
            # ahead of ours: judge the upper bound on the later of the two.
            with chain_outage(self.chain):
                chain_now = self.chain.timestamp()
            if chain_now > self._clock():
                refused = check_terms(payload, requirements, now=chain_now, margin_s=self._margin_s)
        if refused is not None and refused.reason == "invalid_signature":
            # Not a key's signature: a contract wallet's gets its hearing on chain.
            with chain_outage(self.chain):
                refused = contract_wallet_refusal(self.chain, payload, requirements, refused)
        if refused is not None:
            return refused
        entry = self._journal.get(_key(requirements, payload))
        if entry is not None and entry.state != "pending":
            return VerifyResult(
                False, "nonce_already_used", payer, "this authorization is being settled"
            )
        return None

    # ------------------------------------------------------------ settle

    def settle_sync(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResult:
        network = requirements.network
        payer = payload.payer
        refused = self._local_checks(payload, requirements)
        key = _key(requirements, payload)
        with self._lock:
            entry = self._journal.get(key)
            if refused is not None and not (entry is not None and entry.state == "pending"):
                return failed(network, payer, refused.reason or "invalid_payment", refused.message)
            if entry is not None and entry.state != "pending":
                return failed(
                    network, payer, "nonce_already_used", "this authorization is being settled"
                )
            previous = entry.tx_hash if entry is not None else None
            self._remember(key, _Entry("sending", previous, payload.authorization.valid_before))
        try:
            result = self._settle_once(
                payload, requirements, previous, was_pending=entry is not None
            )
        except FacilitatorUnavailableError:
            # The transaction may or may not have gone out: keep it pending so
            # the next attempt reads the chain before sending anything.
            with self._lock:
                self._journal[key] = _Entry("pending", previous, payload.authorization.valid_before)
            raise
        with self._lock:
            if result.success:
                self._journal[key] = _Entry(
                    "settled", result.transaction, payload.authorization.valid_before
                )
            elif result.pending:
                self._journal[key] = _Entry(
                    "pending", result.transaction or previous, payload.authorization.valid_before
                )
            else:
                self._journal.pop(key, None)
        return result

    def _settle_once(
        self,
        payload: PaymentPayload,
        requirements: PaymentRequirements,
        previous_tx: str | None,
        *,
        was_pending: bool,
    ) -> SettleResult:
        token = self._token(requirements)
        auth = payload.authorization
        with chain_outage(self.chain):
            if was_pending:
                resolved = self.resolve_sync(
                    requirements, auth.from_address, auth.nonce, previous_tx
                )
                if resolved is not None:
                    return resolved
                if previous_tx and waiting(self.chain.w3, previous_tx):
                    # Still in the node's pool: a second submission would only
                    # burn gas (the nonce can move money once). Keep waiting.
                    return SettleResult(
                        False,
                        requirements.network,
                        previous_tx,
                        auth.from_address,
                        requirements.amount,
                        "settlement_pending",
                        "the settlement is still waiting to be mined; retry with the same payment",
                        pending=True,
                    )
                # A resubmission: re-read the nonce first, never resend an
                # authorization the chain already consumed. (A first
                # submission follows verify, which has just read it.)
                if token.authorization_state(auth.from_address, auth.nonce):
                    return failed(
                        requirements.network, auth.from_address, "nonce_already_used", None
                    )
            call, gas_max = settlement_call(self.chain, token, payload, requirements)
            if self._submitter is not None:
                tx = self._submitter.send(call, gas_max=gas_max)
            else:
                tx = self.chain.send(call, sender=self._signer, gas_limit=gas_max)
        return settle_outcome(tx, requirements, auth.from_address)

    # ------------------------------------------------------------ resolve

    def resolve_sync(
        self, requirements: PaymentRequirements, payer: str, nonce: bytes, tx_hash: str | None
    ) -> SettleResult | None:
        """The settlement on-chain of this authorization, or ``None`` if its nonce is unused.

        Reads the receipt of ``tx_hash`` if known, else finds the transaction
        through the token's ``AuthorizationUsed`` log. A nonce used by a
        transaction that did not pay ``requirements`` is a failure, not a success.
        """
        w3 = self.chain.w3
        with chain_outage(self.chain):
            if tx_hash:
                receipt = receipt_of(w3, tx_hash)
                if receipt is not None and int(receipt["status"]) == 1:
                    paid = paid_by(receipt, tx_hash, requirements, payer)
                    if paid is not None:
                        return paid
            if not self._token(requirements).authorization_state(payer, nonce):
                return None
            found = find_use(self.chain, requirements, payer, nonce, lookback_blocks=self._lookback)
        if found is not None:
            return found
        return failed(
            requirements.network, payer, "nonce_already_used", "used by another transaction"
        )

    # ------------------------------------------------------------ helpers

    def _token(self, requirements: PaymentRequirements) -> Stablecoin:
        asset = Asset(
            requirements.network,
            requirements.asset,
            0,
            requirements.token_name,
            requirements.token_version,
        )
        return Stablecoin(self.chain, asset)

    def _remember(self, key: tuple[str, str, bytes], entry: _Entry) -> None:
        if len(self._journal) >= _JOURNAL_SIZE_MAX:
            # Entries whose authorization has expired can never be settled again.
            now = int(self._clock())
            for old in [
                k for k, e in self._journal.items() if e.valid_before < now and e.state != "sending"
            ]:
                del self._journal[old]
        self._journal[key] = entry


def _key(requirements: PaymentRequirements, payload: PaymentPayload) -> tuple[str, str, bytes]:
    return (requirements.asset, payload.payer, payload.authorization.nonce)
