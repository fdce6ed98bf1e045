"""The facilitator's half of x402 ``batch-settlement``: verify and settle channel payloads.

:class:`ChannelFacilitator` answers the requests the spec (and the x402 SDK's
server scheme) sends a facilitator, in the same shapes:

- ``/verify`` of a ``deposit``, ``voucher`` or ``refund`` payload: the config
  must hash to the channel id and match the offer (``payTo``, ``asset``,
  ``extra.receiverAuthorizer``, ``extra.withdrawDelay``), the voucher must be
  signed by ``payerAuthorizer`` (or, when that is zero, by the payer, through
  ERC-1271 if it has code), and the cumulative amount must fit the channel
  read from the chain. A deposit is also simulated (``eth_call``), which checks
  the ERC-3009 authorization exactly as the chain will. ``extra`` carries the
  channel's on-chain state.
- ``/settle`` of a ``deposit`` (sent on chain through the ERC-3009 collector;
  from a wallet not deployed yet, ERC-6492, in one Multicall3 transaction
  that deploys it first: ``payers``),
  a ``claim`` (``claimWithSignature``; the receiver authorizer's signature is
  the server's, or this facilitator's own when it holds that key), a
  ``settle`` (sweep a receiver's claimed total) and a ``refund`` enriched by
  the server (``refundNonce``, ``amount``, the claim rows; ``multicall`` of
  the claim and ``refundWithSignature``).

Every call is simulated before it is sent, so a refusal costs no gas and the
custom error comes back as the message. A deposit replayed after it landed
fails its simulation (the EIP-3009 nonce is used), so it can never be taken
twice. Refusals are values with the spec's error codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeGuard, TypeVar, runtime_checkable

import anyio.to_thread
import requests

from farthing.paywall.errors import FacilitatorUnavailableError
from farthing.paywall.schemes.batch_settlement.contract import (
    ChannelEscrow,
    ChannelSnapshot,
    VoucherClaim,
)
from farthing.paywall.schemes.batch_settlement.payers import (
    ERR_DEPOSIT_SIMULATION_FAILED,
    ERR_RECEIVE_AUTHORIZATION_SIGNATURE,
    DepositTransaction,
    deposit_transaction,
    payer_signed,
)
from farthing.paywall.schemes.batch_settlement.redeem import (
    parse_claim_payload,
    parse_settle_payload,
)
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment, ChannelRequirements
from farthing.paywall.schemes.batch_settlement.vouchers import (
    WITHDRAW_DELAY_MAX_S,
    WITHDRAW_DELAY_MIN_S,
    ChannelConfig,
    ChannelDomain,
    ClaimEntry,
    SignedVoucher,
    custom_error_name,
    sign_claim_batch,
    sign_refund,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    CODE_PREFIX,
    ERR_AUTHORIZER_NOT_CONFIGURED,
    ERR_CHANNEL_ID_MISMATCH,
    ERR_CHANNEL_NOT_FOUND,
    ERR_CHANNEL_STATE_READ_FAILED,
    ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
    ERR_CUMULATIVE_EXCEEDS_BALANCE,
    ERR_INVALID_PAYLOAD_TYPE,
    ERR_INVALID_SCHEME,
    ERR_INVALID_VOUCHER_SIGNATURE,
    ERR_NETWORK_MISMATCH,
    ERR_RECEIVER_AUTHORIZER_MISMATCH,
    ERR_RECEIVER_MISMATCH,
    ERR_REFUND_AMOUNT_INVALID,
    ERR_REFUND_PAYLOAD,
    ERR_TOKEN_MISMATCH,
    ERR_WITHDRAW_DELAY_MISMATCH,
    ERR_WITHDRAW_DELAY_OUT_OF_RANGE,
    PAYLOAD_CLAIM,
    PAYLOAD_REFUND,
    PAYLOAD_SETTLE,
    SCHEME,
    DepositPayload,
    RefundPayload,
    VoucherPayload,
    parse_client_payload,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.scope import SettleScope
from farthing.paywall.wire import SettleResult, VerifyResult
from farthing.wallet.address import checksum, is_address
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.errors import ChainUnavailableError, WalletError
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS, ChannelContracts
from farthing.wallet.signer import Signer, TxSigner

__all__ = [
    "ERR_AUTHORIZER_ADDRESS_MISMATCH",
    "ERR_CLAIM_SIMULATION_FAILED",
    "ERR_CLAIM_TRANSACTION_FAILED",
    "ERR_DEPOSIT_SIMULATION_FAILED",
    "ERR_DEPOSIT_TRANSACTION_FAILED",
    "ERR_NOTHING_TO_SETTLE",
    "ERR_RECEIVE_AUTHORIZATION_SIGNATURE",
    "ERR_REFUND_NO_BALANCE",
    "ERR_REFUND_SIMULATION_FAILED",
    "ERR_REFUND_TRANSACTION_FAILED",
    "ERR_SETTLE_SIMULATION_FAILED",
    "ERR_SETTLE_TRANSACTION_FAILED",
    "ERR_VALID_AFTER_IN_FUTURE",
    "ERR_VALID_BEFORE_EXPIRED",
    "ChannelFacilitator",
    "ChannelSettling",
    "snapshot_wire",
]

ERR_AUTHORIZER_ADDRESS_MISMATCH: Final = CODE_PREFIX + "authorizer_address_mismatch"
ERR_DEPOSIT_TRANSACTION_FAILED: Final = CODE_PREFIX + "deposit_transaction_failed"
ERR_CLAIM_SIMULATION_FAILED: Final = CODE_PREFIX + "claim_simulation_failed"
ERR_CLAIM_TRANSACTION_FAILED: Final = CODE_PREFIX + "claim_transaction_failed"
ERR_SETTLE_SIMULATION_FAILED: Final = CODE_PREFIX + "settle_simulation_failed"
ERR_SETTLE_TRANSACTION_FAILED: Final = CODE_PREFIX + "settle_transaction_failed"
ERR_NOTHING_TO_SETTLE: Final = CODE_PREFIX + "nothing_to_settle"
ERR_REFUND_SIMULATION_FAILED: Final = CODE_PREFIX + "refund_simulation_failed"
ERR_REFUND_TRANSACTION_FAILED: Final = CODE_PREFIX + "refund_transaction_failed"
ERR_REFUND_NO_BALANCE: Final = CODE_PREFIX + "refund_no_balance"
ERR_VALID_AFTER_IN_FUTURE: Final = CODE_PREFIX + "payload_authorization_valid_after"
ERR_VALID_BEFORE_EXPIRED: Final = CODE_PREFIX + "payload_authorization_valid_before"

_ZERO: Final = "0x" + "00" * 20
# The reference facilitator's margin: an authorization must outlive its own mining.
_VALID_BEFORE_MARGIN_S: Final = 6


def snapshot_wire(snapshot: ChannelSnapshot) -> dict[str, Any]:
    """A chain snapshot as the spec's ``channelState`` (without ``chargedCumulativeAmount``)."""
    return {
        "channelId": "0x" + snapshot.channel_id.hex(),
        "balance": str(snapshot.balance),
        "totalClaimed": str(snapshot.total_claimed),
        "withdrawRequestedAt": snapshot.withdraw_requested_at,
        "refundNonce": str(snapshot.refund_nonce),
    }


def _uint(text: object, bits: int) -> TypeGuard[str]:
    """A decimal string of an unsigned integer that fits ``bits`` (ASCII digits only)."""
    return (
        isinstance(text, str)
        and 0 < len(text) <= 78
        and text.isascii()
        and text.isdigit()
        and int(text) < 2**bits
    )


def _short(text: str | None) -> str:
    return (text or "")[:200]


_R = TypeVar("_R")


class _Send(Protocol):
    """Sends a call from the facilitator's key; ``gas_max`` caps one whose cost the payer's wallet sets."""

    def __call__(self, call: Call, *, gas_max: int | None = None) -> TxResult: ...


@runtime_checkable
class ChannelSettling(Protocol):
    """A facilitator that verifies and settles batch-settlement payloads (local or remote)."""

    async def verify_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> VerifyResult: ...

    async def settle_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> SettleResult: ...


class ChannelFacilitator:
    """Verify and settle batch-settlement payloads on one chain.

    ``signer`` pays gas. ``authorizer``, when given, is a receiver-authorizer
    key this facilitator signs claims and refunds with for servers that send
    none (it is then listed in ``/supported`` as ``extra.receiverAuthorizer``).
    ``send`` replaces ``chain.send`` (the exact facilitator's pipelined
    submitter, so both schemes share one nonce sequence for the key).
    ``scope`` limits the tokens and receivers of every payload.

    The authorizer key signs for whoever may call this object: over HTTP,
    ``facilitator_app`` serves it only behind an API key (DESIGN.md §13). A
    refund it signs is at most what the caller left uncharged: the channel's
    balance less the larger of its claimed total and the claims sent with it.
    """

    def __init__(
        self,
        chain: Chain,
        signer: TxSigner,
        *,
        authorizer: Signer | None = None,
        contracts: ChannelContracts = CANONICAL_CHANNEL_CONTRACTS,
        send: _Send | None = None,
        clock: Callable[[], float] = time.time,
        scope: SettleScope | None = None,
    ) -> None:
        self.chain = chain
        self.scope = scope or SettleScope()
        self.network = chain.network
        self.escrow = ChannelEscrow(chain, contracts.settlement)
        self.collector = checksum(contracts.erc3009_collector)
        self.domain = ChannelDomain(chain.chain_id, contracts.settlement)
        self.authorizer = authorizer
        self._signer = signer
        self._send: _Send = send or self._chain_send
        self._clock = clock

    def __repr__(self) -> str:
        return f"ChannelFacilitator({self.chain!r}, signer={self._signer.address})"

    def _chain_send(self, call: Call, *, gas_max: int | None = None) -> TxResult:
        return self.chain.send(call, sender=self._signer, gas_limit=gas_max)

    async def verify_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> VerifyResult:
        return await anyio.to_thread.run_sync(self._outage, self.verify, payment, requirements)

    async def settle_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> SettleResult:
        return await anyio.to_thread.run_sync(self._outage, self.settle, payment, requirements)

    def _outage(self, method: Callable[..., _R], *args: Any) -> _R:
        """An RPC that does not answer is an outage (a 503), never a payment outcome."""
        try:
            return method(*args)
        except ChainUnavailableError as exc:
            raise FacilitatorUnavailableError(str(exc)) from None
        except (requests.RequestException, OSError):
            raise FacilitatorUnavailableError(
                f"the chain RPC at {self.chain.rpc_url or 'the chain'} did not answer"
            ) from None

    def supported_extra(self) -> dict[str, Any] | None:
        """``/supported``'s ``extra`` for this scheme: the authorizer it signs for, if any."""
        if self.authorizer is None:
            return None
        return {"receiverAuthorizer": self.authorizer.address}

    # ------------------------------------------------------------ verify

    def verify(self, payment: ChannelPayment, requirements: ChannelRequirements) -> VerifyResult:
        refused = self._envelope(payment, requirements)
        if refused is not None:
            return VerifyResult(False, refused.reason, None, refused.detail)
        parsed = parse_client_payload(payment.payload)
        if isinstance(parsed, WireRefusal):
            return VerifyResult(False, parsed.reason, None, parsed.detail)
        payer = parsed.config.payer
        reason = self._check_config(parsed.config, parsed.voucher, requirements)
        if reason is None:
            reason = self._check_voucher_signature(parsed.config, parsed.voucher)
        if reason is not None:
            return VerifyResult(False, reason, payer)
        try:
            snapshot = self.escrow.snapshot(parsed.voucher.channel_id)
        except ChainUnavailableError:
            raise
        except WalletError as exc:
            return VerifyResult(False, ERR_CHANNEL_STATE_READ_FAILED, payer, _short(str(exc)))
        ceiling = parsed.voucher.max_claimable_amount
        if isinstance(parsed, DepositPayload):
            refusal = self._check_deposit(parsed, snapshot)
            if refusal is not None:
                return VerifyResult(False, refusal[0], payer, refusal[1])
            balance = snapshot.balance + parsed.amount
        else:
            balance = snapshot.balance
            if balance == 0:
                return VerifyResult(False, ERR_CHANNEL_NOT_FOUND, payer)
        if ceiling > balance:
            return VerifyResult(False, ERR_CUMULATIVE_EXCEEDS_BALANCE, payer)
        refund = isinstance(parsed, RefundPayload)
        if ceiling < snapshot.total_claimed or (not refund and ceiling == snapshot.total_claimed):
            return VerifyResult(False, ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED, payer)
        return VerifyResult(True, None, payer, None, snapshot_wire(snapshot))

    def _envelope(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> WireRefusal | None:
        if payment.accepted.scheme != SCHEME or requirements.scheme != SCHEME:
            return WireRefusal(ERR_INVALID_SCHEME, "only batch-settlement is handled here")
        if payment.accepted.network != requirements.network or requirements.network != self.network:
            return WireRefusal(ERR_NETWORK_MISMATCH, f"this facilitator runs on {self.network}")
        outside = self.scope.refusal(requirements.asset, requirements.pay_to)
        if outside is None:
            outside = self._payload_scope(payment.payload)
        return WireRefusal(*outside) if outside is not None else None

    def _payload_scope(self, payload: Mapping[str, Any]) -> tuple[str, str] | None:
        """The tokens and receivers a payload names itself, against ``scope``."""
        named: list[object] = [payload.get("channelConfig")]
        if payload.get("type") == PAYLOAD_SETTLE:
            named.append(payload)
        rows = payload.get("claims")
        for row in rows if isinstance(rows, list) else ():
            voucher = row.get("voucher") if isinstance(row, dict) else None
            named.append(voucher.get("channel") if isinstance(voucher, dict) else None)
        for item in named:
            if not isinstance(item, dict):
                continue  # the parser refuses it with its own code
            token, receiver = item.get("token"), item.get("receiver")
            if isinstance(token, str) and isinstance(receiver, str):
                outside = self.scope.refusal(token, receiver)
                if outside is not None:
                    return outside
        return None

    def _check_config(
        self, config: ChannelConfig, voucher: SignedVoucher, requirements: ChannelRequirements
    ) -> str | None:
        if self.domain.channel_id(config) != voucher.channel_id:
            return ERR_CHANNEL_ID_MISMATCH
        if config.receiver != requirements.pay_to:
            return ERR_RECEIVER_MISMATCH
        wanted = requirements.extra.get("receiverAuthorizer")
        if (
            not isinstance(wanted, str)
            or not is_address(wanted)
            or checksum(wanted) == checksum(_ZERO)
            or checksum(wanted) != config.receiver_authorizer
        ):
            return ERR_RECEIVER_AUTHORIZER_MISMATCH
        if config.token != requirements.asset:
            return ERR_TOKEN_MISMATCH
        delay = requirements.extra.get("withdrawDelay")
        if delay is not None and delay != config.withdraw_delay_s:
            return ERR_WITHDRAW_DELAY_MISMATCH
        if not WITHDRAW_DELAY_MIN_S <= config.withdraw_delay_s <= WITHDRAW_DELAY_MAX_S:
            return ERR_WITHDRAW_DELAY_OUT_OF_RANGE
        return None

    def _check_voucher_signature(self, config: ChannelConfig, voucher: SignedVoucher) -> str | None:
        digest = self.domain.voucher_digest(voucher.channel_id, voucher.max_claimable_amount)
        if config.payer_authorizer != checksum(_ZERO):
            ok = recover_digest(digest, voucher.signature) == config.payer_authorizer
        else:
            ok = payer_signed(self.chain, config.payer, digest, voucher.signature)
        return None if ok else ERR_INVALID_VOUCHER_SIGNATURE

    def _check_deposit(
        self, deposit: DepositPayload, snapshot: ChannelSnapshot
    ) -> tuple[str, str | None] | None:
        # The chain judges the window; a dev chain's clock may run ahead of ours.
        now = max(int(self._clock()), self.chain.timestamp())
        auth = deposit.authorization
        if auth.valid_before < now + _VALID_BEFORE_MARGIN_S:
            return ERR_VALID_BEFORE_EXPIRED, "the deposit authorization expires too soon"
        if auth.valid_after > now:
            return ERR_VALID_AFTER_IN_FUTURE, "the deposit authorization is not valid yet"
        # The signature as the token checks it; a wallet not deployed yet is
        # deployed by the simulated (and later the sent) transaction first.
        planned = deposit_transaction(self.chain, self.escrow, self.collector, deposit)
        if isinstance(planned, tuple):
            return planned
        simulated = self.chain.call(planned.call, sender=self._signer.address)
        if not simulated.ok:
            name = custom_error_name(simulated.revert_message)
            return ERR_DEPOSIT_SIMULATION_FAILED, name or _short(simulated.revert_message)
        return None

    # ------------------------------------------------------------ settle

    def settle(self, payment: ChannelPayment, requirements: ChannelRequirements) -> SettleResult:
        network = requirements.network
        refused = self._envelope(payment, requirements)
        if refused is not None:
            return SettleResult(False, network, reason=refused.reason, message=refused.detail)
        kind = payment.payload.get("type")
        if kind == PAYLOAD_CLAIM:
            return self._settle_claim(payment, network)
        if kind == PAYLOAD_SETTLE:
            return self._settle_sweep(payment, network)
        if kind == PAYLOAD_REFUND and "refundNonce" in payment.payload:
            return self._settle_refund(payment, network)
        parsed = parse_client_payload(payment.payload)
        if not isinstance(parsed, DepositPayload):
            reason = parsed.reason if isinstance(parsed, WireRefusal) else ERR_INVALID_PAYLOAD_TYPE
            return SettleResult(False, network, reason=reason)
        return self._settle_deposit(payment, parsed, requirements)

    def _submit(
        self, data: bytes | DepositTransaction, failed: str, network: str, payer: str | None
    ) -> TxResult | SettleResult:
        if isinstance(data, DepositTransaction):
            result = self._send(data.call, gas_max=data.gas_max)
        else:
            result = self._send(Call(self.escrow.address, data))
        if result.ok:
            return result
        name = custom_error_name(result.revert_message)
        return SettleResult(
            False,
            network,
            result.tx_hash or "",
            payer,
            reason=failed,
            message=name or result.reason or _short(result.revert_message),
        )

    def _settle_deposit(
        self, payment: ChannelPayment, deposit: DepositPayload, requirements: ChannelRequirements
    ) -> SettleResult:
        network = requirements.network
        payer = deposit.config.payer
        verified = self.verify(payment, requirements)
        if not verified.valid:
            return SettleResult(
                False, network, "", payer, reason=verified.reason, message=verified.message
            )
        planned = deposit_transaction(self.chain, self.escrow, self.collector, deposit)
        if isinstance(planned, tuple):
            return SettleResult(False, network, "", payer, reason=planned[0], message=planned[1])
        sent = self._submit(planned, ERR_DEPOSIT_TRANSACTION_FAILED, network, payer)
        if isinstance(sent, SettleResult):
            return sent
        extra = self._state_extra(deposit.voucher.channel_id)
        return SettleResult(True, network, sent.tx_hash or "", payer, deposit.amount, extra=extra)

    def _state_extra(self, channel_id: bytes) -> dict[str, Any] | None:
        try:
            return {"channelState": snapshot_wire(self.escrow.snapshot(channel_id))}
        except WalletError:
            return None  # the transaction landed; the state is only informational

    def _claim_signature(
        self, claims: tuple[VoucherClaim, ...], given: bytes | None
    ) -> bytes | str:
        if given is not None:
            return given
        if self.authorizer is None:
            return ERR_AUTHORIZER_NOT_CONFIGURED
        if any(c.config.receiver_authorizer != self.authorizer.address for c in claims):
            return ERR_AUTHORIZER_ADDRESS_MISMATCH
        entries = [
            ClaimEntry(self.domain.channel_id(c.config), c.max_claimable_amount, c.total_claimed)
            for c in claims
        ]
        return sign_claim_batch(self.authorizer, self.domain, entries)

    def _settle_claim(self, payment: ChannelPayment, network: str) -> SettleResult:
        parsed = parse_claim_payload(payment.payload)
        if isinstance(parsed, WireRefusal):
            return SettleResult(False, network, reason=parsed.reason, message=parsed.detail)
        signature = self._claim_signature(parsed.claims, parsed.authorizer_signature)
        if isinstance(signature, str):
            return SettleResult(False, network, reason=signature)
        data = self.escrow.encode_claim_with_signature(parsed.claims, signature)
        simulated = self.chain.call(Call(self.escrow.address, data), sender=self._signer.address)
        if not simulated.ok:
            name = custom_error_name(simulated.revert_message)
            return SettleResult(False, network, reason=ERR_CLAIM_SIMULATION_FAILED, message=name)
        sent = self._submit(data, ERR_CLAIM_TRANSACTION_FAILED, network, None)
        if isinstance(sent, SettleResult):
            return sent
        return SettleResult(True, network, sent.tx_hash or "")

    def _settle_sweep(self, payment: ChannelPayment, network: str) -> SettleResult:
        parsed = parse_settle_payload(payment.payload)
        if isinstance(parsed, WireRefusal):
            return SettleResult(False, network, reason=parsed.reason, message=parsed.detail)
        claimed, settled = self.escrow.receiver(parsed.receiver, parsed.token)
        if claimed <= settled:
            return SettleResult(
                False, network, reason=ERR_NOTHING_TO_SETTLE, message="nothing to settle"
            )
        data = self.escrow.encode_settle(parsed.receiver, parsed.token)
        sent = self._submit(data, ERR_SETTLE_TRANSACTION_FAILED, network, None)
        if isinstance(sent, SettleResult):
            return sent
        _, after_settled = self.escrow.receiver(parsed.receiver, parsed.token)
        return SettleResult(True, network, sent.tx_hash or "", amount=after_settled - settled)

    def _settle_refund(self, payment: ChannelPayment, network: str) -> SettleResult:
        raw = payment.payload
        plain = {k: raw[k] for k in ("type", "channelConfig", "voucher") if k in raw}
        parsed = parse_client_payload(plain)
        if not isinstance(parsed, (RefundPayload, VoucherPayload)):
            reason = parsed.reason if isinstance(parsed, WireRefusal) else ERR_REFUND_PAYLOAD
            return SettleResult(False, network, reason=reason)
        config, payer = parsed.config, parsed.config.payer
        amount, nonce = raw.get("amount"), raw.get("refundNonce")
        if not _uint(amount, 128) or int(amount) == 0:
            return SettleResult(False, network, reason=ERR_REFUND_AMOUNT_INVALID)
        if not _uint(nonce, 256):
            return SettleResult(False, network, reason=ERR_REFUND_PAYLOAD)
        channel_id = self.domain.channel_id(config)
        if channel_id != parsed.voucher.channel_id:
            return SettleResult(False, network, reason=ERR_CHANNEL_ID_MISMATCH)
        claims: tuple[VoucherClaim, ...] = ()
        claim_signature: bytes | None = None
        if raw.get("claims"):
            rows = parse_claim_payload(
                {
                    "type": PAYLOAD_CLAIM,
                    "claims": raw["claims"],
                    **(
                        {"claimAuthorizerSignature": raw["claimAuthorizerSignature"]}
                        if "claimAuthorizerSignature" in raw
                        else {}
                    ),
                }
            )
            if isinstance(rows, WireRefusal):
                return SettleResult(False, network, reason=rows.reason, message=rows.detail)
            claims = rows.claims
            signed = self._claim_signature(claims, rows.authorizer_signature)
            if isinstance(signed, str):
                return SettleResult(False, network, reason=signed)
            claim_signature = signed
        before = self.escrow.snapshot(channel_id)
        claimed_after = max([before.total_claimed, *(c.total_claimed for c in claims)])
        if before.balance <= claimed_after:
            return SettleResult(False, network, reason=ERR_REFUND_NO_BALANCE, payer=payer)
        refund_signature = raw.get("refundAuthorizerSignature")
        if isinstance(refund_signature, str) and refund_signature.startswith("0x"):
            try:
                refund_sig = bytes.fromhex(refund_signature[2:])
            except ValueError:
                return SettleResult(False, network, reason=ERR_REFUND_PAYLOAD)
        elif self.authorizer is None:
            return SettleResult(False, network, reason=ERR_AUTHORIZER_NOT_CONFIGURED)
        elif config.receiver_authorizer != self.authorizer.address:
            return SettleResult(False, network, reason=ERR_AUTHORIZER_ADDRESS_MISMATCH)
        elif int(amount) > before.balance - claimed_after:
            # We sign only what the caller left uncharged: the balance less what
            # is claimed, on chain or by the claims sent with this refund.
            return SettleResult(
                False, network, payer=payer, reason=ERR_REFUND_AMOUNT_INVALID,
                message=f"at most {before.balance - claimed_after} is refundable",
            )  # fmt: skip
        else:
            refund_sig = sign_refund(
                self.authorizer, self.domain, channel_id, int(nonce), int(amount)
            )
        refund_call = self.escrow.encode_refund_with_signature(
            config, int(amount), int(nonce), refund_sig
        )
        data = (
            self.escrow.encode_multicall(
                [self.escrow.encode_claim_with_signature(claims, claim_signature), refund_call]
            )
            if claims and claim_signature is not None
            else refund_call
        )
        simulated = self.chain.call(Call(self.escrow.address, data), sender=self._signer.address)
        if not simulated.ok:
            name = custom_error_name(simulated.revert_message)
            return SettleResult(
                False, network, payer=payer, reason=ERR_REFUND_SIMULATION_FAILED, message=name
            )
        sent = self._submit(data, ERR_REFUND_TRANSACTION_FAILED, network, payer)
        if isinstance(sent, SettleResult):
            return sent
        after = self.escrow.snapshot(channel_id)
        refunded = before.balance - after.balance
        return SettleResult(
            True, network, sent.tx_hash or "", payer, refunded,
            extra={"channelState": snapshot_wire(after)},
        )  # fmt: skip
