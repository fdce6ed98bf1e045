"""Typed binding for the batch-settlement escrow (``BatchSettlement`` / ``x402BatchSettlement``).

The same ABI serves our own contract on the local chains and the official
deployment on Base and Base Sepolia. Calls are encoded with eth-abi against
fixed signatures (a test checks each against the committed ABI). Every write
goes through :meth:`Chain.send`, so a refusal is a :class:`TxResult` value;
its ``reason`` is the contract's custom error in snake_case
(``InvalidSignature`` → ``invalid_signature``, ``WithdrawDelayNotElapsed`` →
``withdraw_delay_not_elapsed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

from farthing.invariant import invariant
from farthing.paywall.schemes.batch_settlement.vouchers import ChannelConfig, custom_error_name
from farthing.paywall.schemes.calldata import arg_types, encode_call
from farthing.paywall.schemes.reverts import with_error_reason
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.eip712 import keccak256
from farthing.wallet.errors import ChainError
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import TxSigner

__all__ = [
    "ESCROW_EVENT_TOPICS",
    "ESCROW_SIGNATURES",
    "ChannelEscrow",
    "ChannelSnapshot",
    "VoucherClaim",
]

_CONFIG = "(address,address,address,address,address,uint40,bytes32)"
_CLAIM = f"(({_CONFIG},uint128),bytes,uint128)"

# Every function this module calls, checked against the ABI by a test.
ESCROW_SIGNATURES: dict[str, str] = {
    "deposit": f"deposit({_CONFIG},uint128,address,bytes)",
    "claim": f"claim({_CLAIM}[])",
    "claimWithSignature": f"claimWithSignature({_CLAIM}[],bytes)",
    "settle": "settle(address,address)",
    "initiateWithdraw": f"initiateWithdraw({_CONFIG},uint128)",
    "finalizeWithdraw": f"finalizeWithdraw({_CONFIG})",
    "refund": f"refund({_CONFIG},uint128)",
    "refundWithSignature": f"refundWithSignature({_CONFIG},uint128,uint256,bytes)",
    "multicall": "multicall(bytes[])",
    "getChannelId": f"getChannelId({_CONFIG})",
    "channels": "channels(bytes32)",
    "pendingWithdrawals": "pendingWithdrawals(bytes32)",
    "receivers": "receivers(address,address)",
    "refundNonce": "refundNonce(bytes32)",
    "getVoucherDigest": "getVoucherDigest(bytes32,uint128)",
    "getRefundDigest": "getRefundDigest(bytes32,uint256,uint128)",
    "getClaimBatchDigest": f"getClaimBatchDigest({_CLAIM}[])",
}


_ARG_TYPES: dict[str, list[str]] = {k: arg_types(v) for k, v in ESCROW_SIGNATURES.items()}

ESCROW_EVENT_TOPICS: dict[str, bytes] = {
    name: keccak256(sig.encode())
    for name, sig in {
        "ChannelCreated": f"ChannelCreated(bytes32,{_CONFIG})",
        "ChannelClosed": f"ChannelClosed(bytes32,{_CONFIG})",
        "Deposited": "Deposited(bytes32,address,uint128,uint128)",
        "Claimed": "Claimed(bytes32,address,uint128,uint128)",
        "Settled": "Settled(address,address,address,uint128)",
        "Refunded": "Refunded(bytes32,address,uint128)",
        "WithdrawInitiated": "WithdrawInitiated(bytes32,uint128,uint40)",
        "WithdrawFinalized": "WithdrawFinalized(bytes32,address,uint128)",
    }.items()
}


@dataclass(frozen=True, slots=True)
class VoucherClaim:
    """One claim row: the payer's signed voucher and the cumulative total to record."""

    config: ChannelConfig
    max_claimable_amount: int
    signature: bytes
    total_claimed: int

    def as_abi(self) -> tuple[Any, ...]:
        return (
            (self.config.as_abi(), self.max_claimable_amount),
            self.signature,
            self.total_claimed,
        )


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """What the spec's ``channelState`` mirrors from the chain, in atomic units and seconds."""

    channel_id: bytes
    balance: int
    total_claimed: int
    withdraw_requested_at: int  # unix seconds; 0 when no timed withdrawal is pending
    withdraw_amount: int
    refund_nonce: int

    @property
    def available(self) -> int:
        """Escrow the payer could still get back: ``balance - totalClaimed``."""
        return self.balance - self.total_claimed


def _encode(key: str, args: Sequence[Any]) -> bytes:
    return encode_call(ESCROW_SIGNATURES[key], _ARG_TYPES[key], args)


class ChannelEscrow:
    """The escrow contract at one address on one chain."""

    def __init__(self, chain: Chain, address: str = CANONICAL_CHANNEL_CONTRACTS.settlement) -> None:
        self.chain = chain
        self.address = checksum(address)

    def __repr__(self) -> str:
        return f"ChannelEscrow({self.address} on {self.chain.network})"

    # ------------------------------------------------------------ calldata

    @staticmethod
    def encode_deposit(
        config: ChannelConfig, amount: int, collector: str, collector_data: bytes
    ) -> bytes:
        return _encode("deposit", [config.as_abi(), amount, checksum(collector), collector_data])

    @staticmethod
    def encode_claim(claims: Sequence[VoucherClaim]) -> bytes:
        return _encode("claim", [[c.as_abi() for c in claims]])

    @staticmethod
    def encode_claim_with_signature(claims: Sequence[VoucherClaim], signature: bytes) -> bytes:
        return _encode("claimWithSignature", [[c.as_abi() for c in claims], signature])

    @staticmethod
    def encode_settle(receiver: str, token: str) -> bytes:
        return _encode("settle", [checksum(receiver), checksum(token)])

    @staticmethod
    def encode_initiate_withdraw(config: ChannelConfig, amount: int) -> bytes:
        return _encode("initiateWithdraw", [config.as_abi(), amount])

    @staticmethod
    def encode_finalize_withdraw(config: ChannelConfig) -> bytes:
        return _encode("finalizeWithdraw", [config.as_abi()])

    @staticmethod
    def encode_refund(config: ChannelConfig, amount: int) -> bytes:
        return _encode("refund", [config.as_abi(), amount])

    @staticmethod
    def encode_refund_with_signature(
        config: ChannelConfig, amount: int, nonce: int, signature: bytes
    ) -> bytes:
        return _encode("refundWithSignature", [config.as_abi(), amount, nonce, signature])

    @staticmethod
    def encode_multicall(calls: Sequence[bytes]) -> bytes:
        return _encode("multicall", [list(calls)])

    # ------------------------------------------------------------ writes

    def send(self, data: bytes, *, sender: TxSigner) -> TxResult:
        """Send calldata built by an ``encode_*`` method; a custom error becomes the reason."""
        return with_error_reason(
            self.chain.send(Call(self.address, data), sender=sender), custom_error_name
        )

    def deposit(
        self,
        config: ChannelConfig,
        amount: int,
        collector: str,
        collector_data: bytes,
        *,
        sender: TxSigner,
    ) -> TxResult:
        data = self.encode_deposit(config, amount, collector, collector_data)
        return self.send(data, sender=sender)

    def claim(self, claims: Sequence[VoucherClaim], *, sender: TxSigner) -> TxResult:
        return self.send(self.encode_claim(claims), sender=sender)

    def claim_with_signature(
        self, claims: Sequence[VoucherClaim], signature: bytes, *, sender: TxSigner
    ) -> TxResult:
        return self.send(self.encode_claim_with_signature(claims, signature), sender=sender)

    def settle(self, receiver: str, token: str, *, sender: TxSigner) -> TxResult:
        return self.send(self.encode_settle(receiver, token), sender=sender)

    def initiate_withdraw(
        self, config: ChannelConfig, amount: int, *, sender: TxSigner
    ) -> TxResult:
        return self.send(self.encode_initiate_withdraw(config, amount), sender=sender)

    def finalize_withdraw(self, config: ChannelConfig, *, sender: TxSigner) -> TxResult:
        return self.send(self.encode_finalize_withdraw(config), sender=sender)

    def refund(self, config: ChannelConfig, amount: int, *, sender: TxSigner) -> TxResult:
        return self.send(self.encode_refund(config, amount), sender=sender)

    def refund_with_signature(
        self, config: ChannelConfig, amount: int, nonce: int, signature: bytes, *, sender: TxSigner
    ) -> TxResult:
        data = self.encode_refund_with_signature(config, amount, nonce, signature)
        return self.send(data, sender=sender)

    def multicall(self, calls: Sequence[bytes], *, sender: TxSigner) -> TxResult:
        return self.send(self.encode_multicall(calls), sender=sender)

    # ------------------------------------------------------------ reads

    def _read(self, key: str, args: Sequence[Any], out: list[str]) -> Any:
        result = self.chain.call(Call(self.address, _encode(key, args)))
        if not result.ok:
            raise ChainError(f"{self!r} refused {key}: {result.revert_message}")
        values = self._decode(key, out, result.return_data)
        return values[0] if len(values) == 1 else values

    def _decode(self, key: str, types: list[str], data: bytes) -> Any:
        # No code at the address answers an empty success; a foreign contract
        # answers bytes of another shape. Either is a wrong escrow address, a
        # value for the caller to refuse, never a crash.
        if not data:
            raise ChainError(f"no escrow answers {key} at {self.address} (is it deployed here?)")
        try:
            return abi_decode(types, data)
        except (DecodingError, OverflowError, ValueError):
            raise ChainError(f"the contract at {self.address} answered {key} unreadably") from None

    def channel_id(self, config: ChannelConfig) -> bytes:
        return bytes(self._read("getChannelId", [config.as_abi()], ["bytes32"]))

    def channel(self, channel_id: bytes) -> tuple[int, int]:
        """``(balance, totalClaimed)`` of a channel."""
        balance, claimed = self._read("channels", [channel_id], ["uint128", "uint128"])
        return int(balance), int(claimed)

    def pending_withdrawal(self, channel_id: bytes) -> tuple[int, int]:
        """``(amount, initiatedAt)``; ``initiatedAt`` is 0 when none is pending."""
        amount, at = self._read("pendingWithdrawals", [channel_id], ["uint128", "uint40"])
        return int(amount), int(at)

    def receiver(self, receiver: str, token: str) -> tuple[int, int]:
        """``(totalClaimed, totalSettled)`` of a receiver and token, over all its channels."""
        args = [checksum(receiver), checksum(token)]
        claimed, settled = self._read("receivers", args, ["uint128", "uint128"])
        return int(claimed), int(settled)

    def refund_nonce(self, channel_id: bytes) -> int:
        return int(self._read("refundNonce", [channel_id], ["uint256"]))

    def snapshot(self, channel_id: bytes) -> ChannelSnapshot:
        """The channel's balance, claims, pending withdrawal and refund nonce, read at once.

        The three views go in one ``eth_call`` of the escrow's own ``multicall``
        (one round trip, one block: the values cannot straddle a transaction).
        """
        reads = [
            _encode("channels", [channel_id]),
            _encode("pendingWithdrawals", [channel_id]),
            _encode("refundNonce", [channel_id]),
        ]
        outputs = self._read("multicall", [reads], ["bytes[]"])
        invariant(len(outputs) == len(reads), "multicall answers each call")
        balance, claimed = self._decode("channels", ["uint128", "uint128"], outputs[0])
        amount, at = self._decode("pendingWithdrawals", ["uint128", "uint40"], outputs[1])
        (nonce,) = self._decode("refundNonce", ["uint256"], outputs[2])
        return ChannelSnapshot(
            channel_id, int(balance), int(claimed), int(at), int(amount), int(nonce)
        )

    def voucher_digest(self, channel_id: bytes, max_claimable_amount: int) -> bytes:
        args = [channel_id, max_claimable_amount]
        return bytes(self._read("getVoucherDigest", args, ["bytes32"]))

    def refund_digest(self, channel_id: bytes, nonce: int, amount: int) -> bytes:
        return bytes(self._read("getRefundDigest", [channel_id, nonce, amount], ["bytes32"]))

    def claim_batch_digest(self, claims: Sequence[VoucherClaim]) -> bytes:
        args = [[c.as_abi() for c in claims]]
        return bytes(self._read("getClaimBatchDigest", args, ["bytes32"]))
