"""x402 ``auth-capture``: the escrow binding, its events and errors, and placement on dev chains.

:class:`AuthCaptureEscrow` drives the escrow: ``authorize`` places the hold,
``capture`` pays it out (in parts if wanted; the fee is an absolute
``fee_amount`` per the v1.1 ABI, see
:func:`~farthing.paywall.schemes.auth_capture.payment.fee_amount`), ``void``
releases the rest, ``refund`` returns captured money (its liquidity pulled
from the operator by the ``OperatorRefundCollector``, which the operator must
have approved), and ``reclaim`` is the payer's own way back after
``authorizationExpiry``. Every write is simulated first and its outcome is a
:class:`~farthing.wallet.chain.TxResult`: a refusal carries the contract's
custom error in snake_case (``InsufficientAuthorization`` →
``insufficient_authorization``) or the token's reason
(``authorization_used_or_canceled``). The payment's terms and the payer's
signature are ``payment`` (:class:`PaymentInfo`).

:func:`place_auth_capture_contracts` puts our own contracts at the canonical
v1.1 addresses on the memory chain and anvil; real networks use the deployed
official ones (``Network.auth_capture``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError

from farthing.contracts import load_artifact
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo
from farthing.paywall.schemes.calldata import arg_types, encode_call
from farthing.paywall.schemes.placement import (
    MULTICALL3_ADDRESS,
    place_code,
    runtime_code,
)
from farthing.paywall.schemes.reverts import custom_error, error_selectors, with_error_reason
from farthing.wallet.abi_words import checked_bytes32
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.chain import Call, Chain, LogEntry, TxResult
from farthing.wallet.eip712 import keccak256
from farthing.wallet.errors import ChainError
from farthing.wallet.networks import CANONICAL_AUTH_CAPTURE_CONTRACTS, AuthCaptureContracts
from farthing.wallet.signer import TxSigner

__all__ = [
    "AUTH_CAPTURE_EVENT_TOPICS",
    "AUTH_CAPTURE_SIGNATURES",
    "AuthCaptureEscrow",
    "EscrowEvent",
    "PaymentState",
    "custom_error_name",
    "decode_event",
    "place_auth_capture_contracts",
]

_WHAT: Final = "auth-capture"  # names the contracts in a placement error

_INFO = (
    "(address,address,address,address,uint120,uint48,uint48,uint48,uint16,uint16,address,uint256)"
)

# Every escrow call this module encodes, checked against the ABI by a test.
AUTH_CAPTURE_SIGNATURES: Final[dict[str, str]] = {
    "authorize": f"authorize({_INFO},uint256,address,bytes)",
    "charge": f"charge({_INFO},uint256,address,bytes,uint256,address)",
    "capture": f"capture({_INFO},uint256,uint256,address)",
    "void": f"void({_INFO})",
    "reclaim": f"reclaim({_INFO})",
    "refund": f"refund({_INFO},uint256,address,bytes)",
    "getHash": f"getHash({_INFO})",
    "getTokenStore": "getTokenStore(address)",
    "paymentState": "paymentState(bytes32)",
}
_ARG_TYPES: Final[dict[str, list[str]]] = {
    key: arg_types(signature) for key, signature in AUTH_CAPTURE_SIGNATURES.items()
}

# Each event: its signature and the types of its data (every one has the
# payment hash as its only indexed topic, except TokenStoreCreated).
_EVENTS: Final[dict[str, tuple[str, list[str]]]] = {
    "PaymentAuthorized": (
        f"PaymentAuthorized(bytes32,{_INFO},uint256,address)",
        [_INFO, "uint256", "address"],
    ),
    "PaymentCharged": (
        f"PaymentCharged(bytes32,{_INFO},uint256,address,uint256,address)",
        [_INFO, "uint256", "address", "uint256", "address"],
    ),
    "PaymentCaptured": (
        "PaymentCaptured(bytes32,uint256,uint256,address)",
        ["uint256", "uint256", "address"],
    ),
    "PaymentVoided": ("PaymentVoided(bytes32,uint256)", ["uint256"]),
    "PaymentReclaimed": ("PaymentReclaimed(bytes32,uint256)", ["uint256"]),
    "PaymentRefunded": ("PaymentRefunded(bytes32,uint256,address)", ["uint256", "address"]),
}
AUTH_CAPTURE_EVENT_TOPICS: Final[dict[str, bytes]] = {
    name: bytes(keccak256(sig.encode())) for name, (sig, _) in _EVENTS.items()
}
_EVENT_BY_TOPIC: Final = {topic: name for name, topic in AUTH_CAPTURE_EVENT_TOPICS.items()}


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class PaymentState:
    """The escrow's ``paymentState`` of one payment, in atomic units."""

    has_collected_payment: bool
    capturable_amount: int  # on hold: may still be captured, voided or reclaimed
    refundable_amount: int  # captured and not yet refunded


@dataclass(frozen=True, slots=True)
class EscrowEvent:
    """One decoded escrow event. Fields a kind of event does not carry are None."""

    name: str  # PaymentAuthorized, PaymentCharged, PaymentCaptured, PaymentVoided, …
    payment_hash: bytes
    amount: int
    block_number: int
    tx_hash: str
    log_index: int
    fee_amount: int | None = None  # PaymentCaptured, PaymentCharged
    fee_receiver: str | None = None  # PaymentCaptured, PaymentCharged
    token_collector: str | None = None  # PaymentAuthorized, PaymentCharged, PaymentRefunded
    payment_info: PaymentInfo | None = None  # PaymentAuthorized, PaymentCharged


# ---------------------------------------------------------------- custom errors

_ERROR_SELECTORS: Final = error_selectors(
    ("AuthCaptureEscrow", "ERC3009PaymentCollector", "OperatorRefundCollector")
)


def custom_error_name(revert_message: str | None) -> str | None:
    """The auth-capture contracts' custom error behind a revert message, e.g. ``ZeroAuthorization``."""
    return custom_error(revert_message, _ERROR_SELECTORS)


# ---------------------------------------------------------------- the binding


def _encode(key: str, args: Sequence[Any]) -> bytes:
    return encode_call(AUTH_CAPTURE_SIGNATURES[key], _ARG_TYPES[key], args)


class AuthCaptureEscrow:
    """The ``AuthCaptureEscrow`` at one address on one chain.

    Writes take the transaction's ``sender``: the payment's operator for
    everything but ``reclaim``, which only the payer may send. A refusal is a
    ``TxResult`` with ``ok=False`` and a snake_case ``reason``; a refusal found
    by the simulation sends nothing (``tx_hash is None``).
    """

    def __init__(
        self,
        chain: Chain,
        contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS,
    ) -> None:
        self.chain = chain
        self.contracts = contracts
        self.address = checksum(contracts.escrow)

    def __repr__(self) -> str:
        return f"AuthCaptureEscrow({self.address} on {self.chain.network})"

    # ------------------------------------------------------------ calldata

    @staticmethod
    def encode_authorize(
        info: PaymentInfo, amount: int, collector: str, collector_data: bytes
    ) -> bytes:
        return _encode("authorize", [info.to_abi(), amount, checksum(collector), collector_data])

    @staticmethod
    def encode_charge(
        info: PaymentInfo,
        amount: int,
        collector: str,
        collector_data: bytes,
        fee: int,
        fee_receiver: str,
    ) -> bytes:
        args = [info.to_abi(), amount, checksum(collector), collector_data, fee]
        return _encode("charge", [*args, checksum(fee_receiver)])

    @staticmethod
    def encode_capture(info: PaymentInfo, amount: int, fee: int, fee_receiver: str) -> bytes:
        return _encode("capture", [info.to_abi(), amount, fee, checksum(fee_receiver)])

    @staticmethod
    def encode_void(info: PaymentInfo) -> bytes:
        return _encode("void", [info.to_abi()])

    @staticmethod
    def encode_reclaim(info: PaymentInfo) -> bytes:
        return _encode("reclaim", [info.to_abi()])

    @staticmethod
    def encode_refund(
        info: PaymentInfo, amount: int, collector: str, collector_data: bytes
    ) -> bytes:
        return _encode("refund", [info.to_abi(), amount, checksum(collector), collector_data])

    # ------------------------------------------------------------ writes

    def send(self, data: bytes, *, sender: TxSigner) -> TxResult:
        """Simulate, then send calldata built by an ``encode_*`` method."""
        return with_error_reason(
            self.chain.send(Call(self.address, data), sender=sender), custom_error_name
        )

    def authorize(
        self,
        info: PaymentInfo,
        amount: int,
        collector_data: bytes,
        *,
        sender: TxSigner,
        collector: str | None = None,
    ) -> TxResult:
        """Place the hold: collect ``amount`` (the x402 spec says: all of ``max_amount``).

        ``collector_data`` is the payer's signature from
        :func:`sign_payment_authorization`; ``collector`` defaults to the
        ERC-3009 collector of this escrow's contract set.
        """
        target = self.contracts.erc3009_collector if collector is None else collector
        return self.send(self.encode_authorize(info, amount, target, collector_data), sender=sender)

    def charge(
        self,
        info: PaymentInfo,
        amount: int,
        collector_data: bytes,
        *,
        fee: int = 0,
        fee_receiver: str = ZERO_ADDRESS,
        sender: TxSigner,
        collector: str | None = None,
    ) -> TxResult:
        """Collect and pay out ``amount`` at once, with no hold (the ``authorization`` flow)."""
        target = self.contracts.erc3009_collector if collector is None else collector
        data = self.encode_charge(info, amount, target, collector_data, fee, fee_receiver)
        return self.send(data, sender=sender)

    def capture(
        self,
        info: PaymentInfo,
        amount: int,
        *,
        fee: int = 0,
        fee_receiver: str = ZERO_ADDRESS,
        sender: TxSigner,
    ) -> TxResult:
        """Pay ``amount`` of the hold out: ``fee`` (atomic units) to ``fee_receiver``, the rest to the receiver.

        The escrow bounds ``fee`` by the payment's basis points of ``amount``
        (:func:`fee_amount` gives the bound for a rate).
        """
        return self.send(self.encode_capture(info, amount, fee, fee_receiver), sender=sender)

    def void(self, info: PaymentInfo, *, sender: TxSigner) -> TxResult:
        """Release the whole remaining hold to the payer."""
        return self.send(self.encode_void(info), sender=sender)

    def reclaim(self, info: PaymentInfo, *, sender: TxSigner) -> TxResult:
        """The payer takes its hold back once ``authorization_expiry`` has passed."""
        return self.send(self.encode_reclaim(info), sender=sender)

    def refund(
        self,
        info: PaymentInfo,
        amount: int,
        *,
        sender: TxSigner,
        collector: str | None = None,
        collector_data: bytes = b"",
    ) -> TxResult:
        """Return ``amount`` of what was captured to the payer, before ``refund_expiry``.

        With the default ``OperatorRefundCollector`` the money comes from the
        operator, who must have approved that collector for the token first.
        """
        target = self.contracts.operator_refund_collector if collector is None else collector
        return self.send(self.encode_refund(info, amount, target, collector_data), sender=sender)

    # ------------------------------------------------------------ reads

    def _read(self, key: str, args: Sequence[Any], out: list[str]) -> Any:
        result = self.chain.call(Call(self.address, _encode(key, args)))
        if not result.ok:
            raise ChainError(f"{self!r} refused {key}: {result.revert_message}")
        try:
            return abi_decode(out, result.return_data)
        except DecodingError:
            raise ChainError(
                f"no AuthCaptureEscrow answers at {self.address} on {self.chain.network}"
            ) from None

    def get_hash(self, info: PaymentInfo) -> bytes:
        """The contract's own ``getHash`` (equal to ``info.hash(chain_id, escrow)``)."""
        return bytes(self._read("getHash", [info.to_abi()], ["bytes32"])[0])

    def token_store(self, operator: str) -> str:
        """Where ``operator``'s held tokens sit."""
        return checksum(self._read("getTokenStore", [checksum(operator)], ["address"])[0])

    def payment_state(self, payment: PaymentInfo | bytes) -> PaymentState:
        """``paymentState`` of a payment, given its info or its hash."""
        key = (
            payment.hash(self.chain.chain_id, self.address)
            if isinstance(payment, PaymentInfo)
            else payment
        )
        collected, capturable, refundable = self._read(
            "paymentState", [checked_bytes32("payment hash", key)], ["bool", "uint120", "uint120"]
        )
        return PaymentState(bool(collected), int(capturable), int(refundable))

    def events(
        self,
        from_block: int,
        to_block: int | None = None,
        *,
        payment_hash: bytes | None = None,
    ) -> list[EscrowEvent]:
        """The escrow's payment events in a block range, oldest first; optionally of one payment."""
        topics: list[Any] = [["0x" + t.hex() for t in AUTH_CAPTURE_EVENT_TOPICS.values()]]
        if payment_hash is not None:
            topics.append("0x" + checked_bytes32("payment_hash", payment_hash).hex())
        return [
            decode_event(log) for log in self.chain.logs(self.address, topics, from_block, to_block)
        ]


def decode_event(log: LogEntry) -> EscrowEvent:
    """Decode one escrow payment event (its first topic must be one of ours)."""
    name = _EVENT_BY_TOPIC.get(bytes(log.topics[0])) if log.topics else None
    if name is None:
        raise ChainError(f"log {log.tx_hash}:{log.log_index} is not an auth-capture payment event")
    values = abi_decode(_EVENTS[name][1], log.data)
    payment_hash = bytes(log.topics[1])
    where = (log.block_number, log.tx_hash, log.log_index)
    if name == "PaymentAuthorized":
        info, amount, collector = values
        return EscrowEvent(
            name, payment_hash, int(amount), *where,
            token_collector=checksum(collector), payment_info=PaymentInfo.from_abi(info),
        )  # fmt: skip
    if name == "PaymentCharged":
        info, amount, collector, fee, fee_to = values
        return EscrowEvent(
            name, payment_hash, int(amount), *where,
            fee_amount=int(fee), fee_receiver=checksum(fee_to),
            token_collector=checksum(collector), payment_info=PaymentInfo.from_abi(info),
        )  # fmt: skip
    if name == "PaymentCaptured":
        amount, fee, fee_to = values
        return EscrowEvent(
            name, payment_hash, int(amount), *where,
            fee_amount=int(fee), fee_receiver=checksum(fee_to),
        )  # fmt: skip
    if name == "PaymentRefunded":
        amount, collector = values
        return EscrowEvent(
            name, payment_hash, int(amount), *where, token_collector=checksum(collector)
        )
    (amount,) = values  # PaymentVoided, PaymentReclaimed
    return EscrowEvent(name, payment_hash, int(amount), *where)


# ---------------------------------------------------------------- placement on dev chains


def place_auth_capture_contracts(
    chain: Chain, contracts: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS
) -> AuthCaptureContracts:
    """Put our escrow, ERC-3009 collector and operator refund collector at ``contracts``' addresses.

    Only on a dev chain (the memory chain or anvil); elsewhere it raises
    ``ChainError``. The Permit2 collector is not placed. A Multicall3 is placed
    at its well-known address when that holds no code (the collector sends
    ERC-6492 preparation calls through it).

    Idempotent: code already in place is left alone. The escrow has no
    immutables; the collectors' (the escrow's address, Multicall3's) are filled
    in by running their constructors read-only, so the code placed is exactly
    what a deployment with those arguments would leave.
    """
    if not chain.is_dev:
        raise ChainError(f"{chain!r} is not a dev chain: use the deployed {_WHAT} contracts there")
    escrow = checksum(contracts.escrow)

    def runtime(name: str, types: list[str], args: list[Any]) -> bytes:
        creation = bytes.fromhex(load_artifact(name).bytecode[2:]) + abi_encode(types, args)
        return runtime_code(chain, creation, what=_WHAT)

    wanted = {
        escrow: bytes.fromhex(load_artifact("AuthCaptureEscrow").deployed_bytecode[2:]),
        checksum(contracts.erc3009_collector): runtime(
            "ERC3009PaymentCollector", ["address", "address"], [escrow, MULTICALL3_ADDRESS]
        ),
        checksum(contracts.operator_refund_collector): runtime(
            "OperatorRefundCollector", ["address"], [escrow]
        ),
        MULTICALL3_ADDRESS: bytes.fromhex(load_artifact("Multicall3").deployed_bytecode[2:]),
    }
    place_code(chain, wanted, what=_WHAT)
    return contracts
