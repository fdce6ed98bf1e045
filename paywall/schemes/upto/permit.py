"""The ``upto`` authorization: a Permit2 witness transfer of up to a ceiling, its digest and signature.

The payer signs ``PermitWitnessTransferFrom(TokenPermissions permitted,
address spender,uint256 nonce,uint256 deadline,Witness witness)`` under
Permit2's domain ``{"name": "Permit2", chainId, verifyingContract: Permit2}``
(no version). ``permitted.amount`` is the ceiling; ``spender`` is the
x402UptoPermit2Proxy; the witness binds the payee (``to``), the one
facilitator that may settle (``facilitator``) and the earliest time
(``validAfter``). The digest is built by hand here (every field one word)
and checked in the tests against eth-account, the x402 SDK and the contract.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

from farthing.paywall.schemes.typed_data import sign_checked, type_hash, typed_digest
from farthing.paywall.schemes.upto.contract import (
    PERMIT2_ADDRESS,
    UPTO_PROXY_ADDRESS,
    PermitArgs,
    WitnessArgs,
)
from farthing.wallet.abi_words import address_word, keccak, word
from farthing.wallet.address import checksum
from farthing.wallet.errors import SigningError
from farthing.wallet.signer import Signer

__all__ = [
    "PERMIT2_DOMAIN_TYPE",
    "UPTO_TYPES",
    "UptoAuthorization",
    "new_nonce",
    "permit2_domain",
    "permit2_separator",
    "sign_authorization",
]

UPTO_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "PermitWitnessTransferFrom": [
        {"name": "permitted", "type": "TokenPermissions"},
        {"name": "spender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
        {"name": "witness", "type": "Witness"},
    ],
    "TokenPermissions": [
        {"name": "token", "type": "address"},
        {"name": "amount", "type": "uint256"},
    ],
    "Witness": [
        {"name": "to", "type": "address"},
        {"name": "facilitator", "type": "address"},
        {"name": "validAfter", "type": "uint256"},
    ],
}
PERMIT2_DOMAIN_TYPE: Final = [
    {"name": "name", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

_PRIMARY: Final = "PermitWitnessTransferFrom"
_PERMIT_TYPEHASH: Final = type_hash(UPTO_TYPES, _PRIMARY)
_TOKEN_PERMISSIONS_TYPEHASH: Final = type_hash(
    {"TokenPermissions": UPTO_TYPES["TokenPermissions"]}, "TokenPermissions"
)
_WITNESS_TYPEHASH: Final = type_hash({"Witness": UPTO_TYPES["Witness"]}, "Witness")
_DOMAIN_TYPEHASH: Final = keccak(
    b"EIP712Domain(string name,uint256 chainId,address verifyingContract)"
)


def permit2_domain(chain_id: int) -> dict[str, Any]:
    """Permit2's EIP-712 domain on ``chain_id``, as a signer takes it."""
    return {"name": "Permit2", "chainId": chain_id, "verifyingContract": PERMIT2_ADDRESS}


def permit2_separator(chain_id: int) -> bytes:
    """Permit2's domain separator on ``chain_id`` (what its ``DOMAIN_SEPARATOR()`` returns)."""
    return keccak(
        _DOMAIN_TYPEHASH + keccak(b"Permit2") + word(chain_id) + address_word(PERMIT2_ADDRESS)
    )


def new_nonce() -> int:
    """A fresh random Permit2 nonce: 256 bits, so two payments never share a bitmap bit by chance."""
    return secrets.randbits(256)


@dataclass(frozen=True, slots=True)
class UptoAuthorization:
    """What the payer signs: up to ``amount`` of ``token`` from ``from_address`` to ``to``.

    ``amount`` is the ceiling (``permitted.amount``); the settled amount is
    chosen by the seller, at most this. Times are unix seconds.
    """

    from_address: str
    token: str
    amount: int
    nonce: int
    deadline: int
    to: str
    facilitator: str
    valid_after: int = 0
    spender: str = UPTO_PROXY_ADDRESS

    def __post_init__(self) -> None:
        for name in ("from_address", "token", "to", "facilitator", "spender"):
            object.__setattr__(self, name, checksum(getattr(self, name)))

    def struct_hash(self) -> bytes:
        permitted = keccak(
            _TOKEN_PERMISSIONS_TYPEHASH + address_word(self.token) + word(self.amount)
        )
        witness = keccak(
            _WITNESS_TYPEHASH
            + address_word(self.to)
            + address_word(self.facilitator)
            + word(self.valid_after)
        )
        return keccak(
            _PERMIT_TYPEHASH
            + permitted
            + address_word(self.spender)
            + word(self.nonce)
            + word(self.deadline)
            + witness
        )

    def digest(self, chain_id: int) -> bytes:
        """The EIP-712 digest Permit2 checks the signature against."""
        return typed_digest(permit2_separator(chain_id), self.struct_hash())

    def message(self) -> dict[str, Any]:
        """The typed-data message, as a signer (or ``eth_signTypedData_v4``) takes it."""
        return {
            "permitted": {"token": self.token, "amount": self.amount},
            "spender": self.spender,
            "nonce": self.nonce,
            "deadline": self.deadline,
            "witness": {
                "to": self.to,
                "facilitator": self.facilitator,
                "validAfter": self.valid_after,
            },
        }

    def permit_args(self) -> PermitArgs:
        return ((self.token, self.amount), self.nonce, self.deadline)

    def witness_args(self) -> WitnessArgs:
        return (self.to, self.facilitator, self.valid_after)

    def to_wire(self) -> dict[str, Any]:
        """The ``permit2Authorization`` object: numbers as decimal strings, as the SDK sends them."""
        return {
            "from": self.from_address,
            "permitted": {"token": self.token, "amount": str(self.amount)},
            "spender": self.spender,
            "nonce": str(self.nonce),
            "deadline": str(self.deadline),
            "witness": {
                "to": self.to,
                "facilitator": self.facilitator,
                "validAfter": str(self.valid_after),
            },
        }


def sign_authorization(signer: Signer, authorization: UptoAuthorization, chain_id: int) -> bytes:
    """encode → sign → recover: the payer's signature of ``authorization`` on ``chain_id``.

    Raises ``SigningError`` if the signer is not ``authorization.from_address``
    or its signature does not recover to it.
    """
    if signer.address != authorization.from_address:
        raise SigningError("the signer is not the authorization's from address")
    return sign_checked(
        signer,
        permit2_domain(chain_id),
        UPTO_TYPES,
        _PRIMARY,
        authorization.message(),
        authorization.digest(chain_id),
        what="upto authorization",
    )
