"""x402 ``batch-settlement`` channels: configs, ids, EIP-712 digests, signing, placement.

A channel is identified by its immutable :class:`ChannelConfig`; its id is the
EIP-712 hash of that config under the escrow's domain (``"x402 Batch
Settlement"``, version ``"1"``, the chain id and the escrow's address), so one
config gives a different id on every chain and deployment. The payer signs
cumulative ``Voucher(bytes32 channelId,uint128 maxClaimableAmount)``
messages; the receiver authorizer signs ``ClaimBatch`` and ``Refund``
messages. Digests are built by hand here (every field is one 32-byte word)
and checked in the tests against eth-account, the x402 reference package and
the contract's own digest getters.

:func:`place_channel_contracts` puts Farthing's own contracts at the canonical
addresses on a dev chain (the memory chain or anvil), so the official SDKs,
which hard-code those addresses, work unmodified. Real networks use the
deployed official contracts; ``Network.channels`` names them.

Amounts are ints of the token's atomic units; the contract stores them as
``uint128``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from eth_abi.abi import encode as abi_encode

from farthing.contracts import load_artifact
from farthing.invariant import invariant
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS, place_code, runtime_code
from farthing.paywall.schemes.reverts import custom_error, error_selectors
from farthing.paywall.schemes.typed_data import sign_checked, type_hash, typed_digest
from farthing.wallet.abi_words import (
    address_word,
    checked_address,
    checked_bytes32,
    checked_uint,
    keccak,
    word,
)
from farthing.wallet.address import checksum
from farthing.wallet.chain import Chain
from farthing.wallet.eip712 import domain_separator
from farthing.wallet.errors import AuthorizationError
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS, ChannelContracts
from farthing.wallet.signer import Signer

__all__ = [
    "CHANNEL_CONFIG_TYPES",
    "CLAIM_BATCH_TYPES",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "REFUND_TYPES",
    "UINT128_MAX",
    "VOUCHER_TYPES",
    "WITHDRAW_DELAY_MAX_S",
    "WITHDRAW_DELAY_MIN_S",
    "ChannelConfig",
    "ChannelDomain",
    "ClaimEntry",
    "SignedVoucher",
    "custom_error_name",
    "deposit_nonce",
    "erc3009_collector_data",
    "place_channel_contracts",
    "sign_claim_batch",
    "sign_refund",
    "sign_voucher",
]

DOMAIN_NAME: Final = "x402 Batch Settlement"
DOMAIN_VERSION: Final = "1"
WITHDRAW_DELAY_MIN_S: Final = 900  # 15 minutes, the contract's floor
WITHDRAW_DELAY_MAX_S: Final = 2_592_000  # 30 days, its ceiling
UINT128_MAX: Final = 2**128 - 1
_WHAT: Final = "batch-settlement"  # names the contracts in a placement error
_UINT40_MAX: Final = 2**40 - 1

CHANNEL_CONFIG_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "ChannelConfig": [
        {"name": "payer", "type": "address"},
        {"name": "payerAuthorizer", "type": "address"},
        {"name": "receiver", "type": "address"},
        {"name": "receiverAuthorizer", "type": "address"},
        {"name": "token", "type": "address"},
        {"name": "withdrawDelay", "type": "uint40"},
        {"name": "salt", "type": "bytes32"},
    ]
}
VOUCHER_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Voucher": [
        {"name": "channelId", "type": "bytes32"},
        {"name": "maxClaimableAmount", "type": "uint128"},
    ]
}
REFUND_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "Refund": [
        {"name": "channelId", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "amount", "type": "uint128"},
    ]
}
CLAIM_BATCH_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "ClaimBatch": [{"name": "claims", "type": "ClaimEntry[]"}],
    "ClaimEntry": [
        {"name": "channelId", "type": "bytes32"},
        {"name": "maxClaimableAmount", "type": "uint128"},
        {"name": "totalClaimed", "type": "uint128"},
    ],
}


_CHANNEL_CONFIG_TYPEHASH = type_hash(CHANNEL_CONFIG_TYPES, "ChannelConfig")
_VOUCHER_TYPEHASH = type_hash(VOUCHER_TYPES, "Voucher")
_REFUND_TYPEHASH = type_hash(REFUND_TYPES, "Refund")
_CLAIM_ENTRY_TYPEHASH = type_hash({"ClaimEntry": CLAIM_BATCH_TYPES["ClaimEntry"]}, "ClaimEntry")
_CLAIM_BATCH_TYPEHASH = type_hash(CLAIM_BATCH_TYPES, "ClaimBatch")


# ---------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """The immutable parameters a channel id is derived from.

    ``payer_authorizer`` is the EOA that signs vouchers, or the zero address
    to check vouchers against ``payer`` (which may then be an ERC-1271 wallet).
    """

    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay_s: int
    salt: bytes

    def __post_init__(self) -> None:
        for name in ("payer", "payer_authorizer", "receiver", "receiver_authorizer", "token"):
            object.__setattr__(self, name, checked_address(name, getattr(self, name)))
        checked_uint("withdraw_delay_s", self.withdraw_delay_s, _UINT40_MAX)
        object.__setattr__(self, "salt", checked_bytes32("salt", self.salt))

    def as_abi(self) -> tuple[Any, ...]:
        """The ``ChannelConfig`` tuple for eth-abi."""
        return (
            self.payer,
            self.payer_authorizer,
            self.receiver,
            self.receiver_authorizer,
            self.token,
            self.withdraw_delay_s,
            self.salt,
        )

    def to_wire(self) -> dict[str, Any]:
        """The spec's camelCase ``channelConfig`` object."""
        return {
            "payer": self.payer,
            "payerAuthorizer": self.payer_authorizer,
            "receiver": self.receiver,
            "receiverAuthorizer": self.receiver_authorizer,
            "token": self.token,
            "withdrawDelay": self.withdraw_delay_s,
            "salt": "0x" + self.salt.hex(),
        }

    @classmethod
    def from_wire(cls, data: object) -> ChannelConfig:
        """Parse a wire ``channelConfig``; malformed input raises ``AuthorizationError``."""
        if not isinstance(data, dict):
            raise AuthorizationError("channelConfig must be an object")
        try:
            return cls(
                payer=data["payer"],
                payer_authorizer=data["payerAuthorizer"],
                receiver=data["receiver"],
                receiver_authorizer=data["receiverAuthorizer"],
                token=data["token"],
                withdraw_delay_s=data["withdrawDelay"],
                salt=data["salt"],
            )
        except KeyError as exc:
            raise AuthorizationError(f"channelConfig is missing {exc.args[0]}") from None

    def struct_hash(self) -> bytes:
        return keccak(
            _CHANNEL_CONFIG_TYPEHASH
            + address_word(self.payer)
            + address_word(self.payer_authorizer)
            + address_word(self.receiver)
            + address_word(self.receiver_authorizer)
            + address_word(self.token)
            + word(self.withdraw_delay_s)
            + self.salt
        )


@dataclass(frozen=True, slots=True)
class ClaimEntry:
    """One row of a claim batch as the receiver authorizer signs it."""

    channel_id: bytes
    max_claimable_amount: int
    total_claimed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_id", checked_bytes32("channel_id", self.channel_id))
        checked_uint("max_claimable_amount", self.max_claimable_amount, UINT128_MAX)
        checked_uint("total_claimed", self.total_claimed, UINT128_MAX)


@dataclass(frozen=True, slots=True)
class ChannelDomain:
    """The escrow's EIP-712 domain on one chain: every id and digest hangs off it."""

    chain_id: int
    settlement: str = CANONICAL_CHANNEL_CONTRACTS.settlement

    def __post_init__(self) -> None:
        invariant(self.chain_id > 0, "a chain id is positive")
        object.__setattr__(self, "settlement", checksum(self.settlement))

    def as_eip712(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.settlement,
        }

    def separator(self) -> bytes:
        return bytes(domain_separator(DOMAIN_NAME, DOMAIN_VERSION, self.chain_id, self.settlement))

    def _digest(self, struct_hash: bytes) -> bytes:
        return typed_digest(self.separator(), struct_hash)

    def channel_id(self, config: ChannelConfig) -> bytes:
        return _channel_id(self, config)

    def voucher_digest(self, channel_id: bytes, max_claimable_amount: int) -> bytes:
        cid = checked_bytes32("channel_id", channel_id)
        amount = checked_uint("max_claimable_amount", max_claimable_amount, UINT128_MAX)
        return self._digest(keccak(_VOUCHER_TYPEHASH + cid + word(amount)))

    def refund_digest(self, channel_id: bytes, nonce: int, amount: int) -> bytes:
        cid = checked_bytes32("channel_id", channel_id)
        words = word(checked_uint("nonce", nonce, 2**256 - 1)) + word(
            checked_uint("amount", amount, UINT128_MAX)
        )
        return self._digest(keccak(_REFUND_TYPEHASH + cid + words))

    def claim_batch_digest(self, entries: list[ClaimEntry] | tuple[ClaimEntry, ...]) -> bytes:
        hashes = b"".join(
            keccak(
                _CLAIM_ENTRY_TYPEHASH
                + e.channel_id
                + word(e.max_claimable_amount)
                + word(e.total_claimed)
            )
            for e in entries
        )
        return self._digest(keccak(_CLAIM_BATCH_TYPEHASH + keccak(hashes)))


@dataclass(frozen=True, slots=True)
class SignedVoucher:
    """A payer's cumulative ceiling for one channel, with its 65-byte signature."""

    channel_id: bytes
    max_claimable_amount: int
    signature: bytes

    def to_wire(self) -> dict[str, str]:
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "maxClaimableAmount": str(self.max_claimable_amount),
            "signature": "0x" + self.signature.hex(),
        }


# ---------------------------------------------------------------- signing


def _sign_checked(
    signer: Signer,
    domain: ChannelDomain,
    types: dict[str, list[dict[str, str]]],
    primary: str,
    message: dict[str, Any],
    digest: bytes,
) -> bytes:
    return sign_checked(
        signer, domain.as_eip712(), types, primary, message, digest, what="signature"
    )


def sign_voucher(
    signer: Signer, domain: ChannelDomain, channel_id: bytes, max_claimable_amount: int
) -> SignedVoucher:
    """Sign ``Voucher(channelId, maxClaimableAmount)``: the payer's cumulative ceiling."""
    digest = domain.voucher_digest(channel_id, max_claimable_amount)
    message = {"channelId": channel_id, "maxClaimableAmount": max_claimable_amount}
    signature = _sign_checked(signer, domain, VOUCHER_TYPES, "Voucher", message, digest)
    return SignedVoucher(bytes(channel_id), max_claimable_amount, signature)


def sign_refund(
    signer: Signer, domain: ChannelDomain, channel_id: bytes, nonce: int, amount: int
) -> bytes:
    """The receiver authorizer's ``Refund`` signature for ``refundWithSignature``."""
    digest = domain.refund_digest(channel_id, nonce, amount)
    message = {"channelId": channel_id, "nonce": nonce, "amount": amount}
    return _sign_checked(signer, domain, REFUND_TYPES, "Refund", message, digest)


def sign_claim_batch(
    signer: Signer, domain: ChannelDomain, entries: list[ClaimEntry] | tuple[ClaimEntry, ...]
) -> bytes:
    """The receiver authorizer's ``ClaimBatch`` signature for ``claimWithSignature``."""
    digest = domain.claim_batch_digest(entries)
    message = {
        "claims": [
            {
                "channelId": e.channel_id,
                "maxClaimableAmount": e.max_claimable_amount,
                "totalClaimed": e.total_claimed,
            }
            for e in entries
        ]
    }
    return _sign_checked(signer, domain, CLAIM_BATCH_TYPES, "ClaimBatch", message, digest)


# ---------------------------------------------------------------- ERC-3009 deposits


def deposit_nonce(channel_id: bytes, salt: int) -> bytes:
    """The EIP-3009 nonce the collector uses: ``keccak(abi.encode(channelId, salt))``.

    Binding the channel into the nonce means an authorization signed for one
    channel cannot fund another.
    """
    cid = checked_bytes32("channel_id", channel_id)
    return keccak(cid + word(checked_uint("salt", salt, 2**256 - 1)))


def erc3009_collector_data(
    valid_after: int, valid_before: int, salt: int, signature: bytes
) -> bytes:
    """``collectorData`` for the ERC-3009 collector: ``abi.encode(validAfter, validBefore, salt, signature)``."""
    return abi_encode(
        ["uint256", "uint256", "uint256", "bytes"], [valid_after, valid_before, salt, signature]
    )


# ---------------------------------------------------------------- custom errors

_ERROR_SELECTORS: Final = error_selectors(("BatchSettlement", "ERC3009DepositCollector"))


def custom_error_name(revert_message: str | None) -> str | None:
    """The channel contracts' custom error behind a revert message, e.g. ``InvalidSignature``."""
    return custom_error(revert_message, _ERROR_SELECTORS)


# ---------------------------------------------------------------- placement on dev chains


def place_channel_contracts(
    chain: Chain, contracts: ChannelContracts = CANONICAL_CHANNEL_CONTRACTS
) -> ChannelContracts:
    """Put our BatchSettlement and ERC-3009 collector at ``contracts``' addresses on a dev chain.

    Also places a Multicall3 at its well-known address when that holds no
    code, since the official facilitator batches its reads through it.

    Idempotent: code already in place is left alone. The escrow has no
    constructor state; the collector's one immutable (the escrow's address)
    is filled in by running its constructor read-only, so the code placed is
    exactly what a deployment with that argument would leave.
    """
    settlement_code = bytes.fromhex(load_artifact("BatchSettlement").deployed_bytecode[2:])
    collector_creation = bytes.fromhex(
        load_artifact("ERC3009DepositCollector").bytecode[2:]
    ) + abi_encode(["address"], [checksum(contracts.settlement)])
    wanted = {
        contracts.settlement: settlement_code,
        contracts.erc3009_collector: runtime_code(chain, collector_creation, what=_WHAT),
        # The reference facilitator reads channel state through Multicall3.
        MULTICALL3_ADDRESS: bytes.fromhex(load_artifact("Multicall3").deployed_bytecode[2:]),
    }
    place_code(chain, wanted, what=_WHAT)
    return contracts


# A server hashes the same few configs on every voucher: the id is pure, so keep it.
@lru_cache(maxsize=4096)
def _channel_id(domain: ChannelDomain, config: ChannelConfig) -> bytes:
    return domain._digest(config.struct_hash())
