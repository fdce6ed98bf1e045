"""Paying from a smart account: Farthing's own contract wallet, its factory, and its signer.

A smart account is a contract holding the money; its owner key signs, and
the contract vouches for the signature through ERC-1271
(``isValidSignature``). Farthing's own (``contracts/SmartAccount.sol``) has one
owner key; ``SmartAccountFactory`` deploys it with CREATE2, so its address is
known before it exists (:func:`account_address`).

:class:`SmartAccountSigner` is a :class:`~farthing.wallet.signer.Signer` whose
``address`` is the account, not the key: what it signs pays from the
account. Its signature is the owner's ECDSA signature over the EIP-712
digest, which the account's ``isValidSignature`` checks; while the account is
not deployed yet, the signature is wrapped in ERC-6492 with the factory call
that deploys it (``farthing.wallet.erc6492``), so the facilitator can verify
it in a simulation and deploy the account before settling.

An EIP-7702 account (an EOA delegating to ``SmartAccount``) needs nothing of
this module: its own key signs with a plain :class:`LocalSigner`, and the
delegate's ``isValidSignature`` accepts the EOA's own signature.
"""

from __future__ import annotations

from typing import Any, Final

from eth_abi.abi import encode as abi_encode

from farthing.contracts import load_artifact
from farthing.wallet.abi_words import keccak
from farthing.wallet.address import checksum, is_address
from farthing.wallet.chain import Call, Chain
from farthing.wallet.erc6492 import unwrap, wrap
from farthing.wallet.errors import AddressError, DeploymentError, SigningError
from farthing.wallet.signer import Signer, TxSigner

__all__ = [
    "CREATE_ACCOUNT",
    "DEV_ACCOUNT_FACTORY",
    "SmartAccountSigner",
    "account_address",
    "create_account_calldata",
    "deploy_account",
    "deploy_account_factory",
    "place_account_factory",
]

CREATE_ACCOUNT: Final = "createAccount(address,bytes32)"
# Where a dev chain (`farthing chain dev`, the memory chain) has the factory:
# its runtime code needs no constructor, so it is written there directly.
DEV_ACCOUNT_FACTORY: Final = "0x5A00000000000000000000000000000000000AC7"


def create_account_calldata(owner: str, salt: bytes) -> bytes:
    """The factory call that deploys ``owner``'s account for ``salt``."""
    if len(salt) != 32:
        raise ValueError("a CREATE2 salt is 32 bytes")
    return keccak(CREATE_ACCOUNT.encode())[:4] + abi_encode(
        ["address", "bytes32"], [checksum(owner), salt]
    )


def account_address(factory: str, owner: str, salt: bytes) -> str:
    """Where ``factory`` deploys ``owner``'s account for ``salt`` (CREATE2, computed here)."""
    if len(salt) != 32:
        raise ValueError("a CREATE2 salt is 32 bytes")
    creation = bytes.fromhex(load_artifact("SmartAccount").bytecode[2:])
    init_hash = keccak(creation + abi_encode(["address"], [checksum(owner)]))
    raw = keccak(b"\xff" + bytes.fromhex(checksum(factory)[2:]) + salt + init_hash)
    return checksum("0x" + raw[12:].hex())


def deploy_account_factory(chain: Chain, *, sender: TxSigner) -> str:
    """Deploy a ``SmartAccountFactory``; its address."""
    creation = bytes.fromhex(load_artifact("SmartAccountFactory").bytecode[2:])
    result = chain.deploy(creation, sender=sender)
    if not result.ok or result.contract_address is None:
        raise DeploymentError(f"SmartAccountFactory did not deploy: {result.reason}")
    return result.contract_address


def place_account_factory(chain: Chain) -> str:
    """Write ``SmartAccountFactory`` at :data:`DEV_ACCOUNT_FACTORY` on a dev chain (idempotent)."""
    code = bytes.fromhex(load_artifact("SmartAccountFactory").deployed_bytecode[2:])
    if chain.code_at(DEV_ACCOUNT_FACTORY) != code:
        chain.set_code(DEV_ACCOUNT_FACTORY, code)  # a ChainError anywhere but a dev chain
    return DEV_ACCOUNT_FACTORY


def deploy_account(chain: Chain, factory: str, owner: str, salt: bytes, *, sender: TxSigner) -> str:
    """Deploy ``owner``'s account through ``factory`` (anyone may pay the gas); its address."""
    result = chain.send(Call(factory, create_account_calldata(owner, salt)), sender=sender)
    address = account_address(factory, owner, salt)
    if not result.ok or not chain.code_at(address):
        raise DeploymentError(f"the smart account did not deploy: {result.reason}")
    return address


class SmartAccountSigner:
    """Signs for a ``SmartAccount`` with its owner's key; ``address`` is the account.

    ``factory`` and ``salt`` say how the account is deployed. Until it is,
    give ``deployed=False`` (or build with :meth:`on_chain`) and each signature
    is ERC-6492-wrapped with the factory call.
    """

    __slots__ = ("_address", "_calldata", "_deployed", "_factory", "_owner", "_salt")

    def __init__(self, owner: Signer, *, factory: str, salt: bytes, deployed: bool) -> None:
        if not is_address(factory):
            raise AddressError(f"factory is not an address: {factory!r}")
        self._owner = owner
        self._factory = checksum(factory)
        self._salt = bytes(salt)
        self._calldata = create_account_calldata(owner.address, salt)
        self._address = account_address(factory, owner.address, salt)
        self._deployed = deployed

    @classmethod
    def on_chain(
        cls, chain: Chain, owner: Signer, *, factory: str, salt: bytes
    ) -> SmartAccountSigner:
        """A signer that wraps its signatures exactly when the account has no code yet."""
        address = account_address(factory, owner.address, salt)
        return cls(owner, factory=factory, salt=salt, deployed=bool(chain.code_at(address)))

    @property
    def address(self) -> str:
        return self._address

    @property
    def owner(self) -> str:
        """The key whose ECDSA signature the account accepts."""
        return self._owner.address

    @property
    def factory(self) -> str:
        return self._factory

    @property
    def salt(self) -> bytes:
        return self._salt

    @property
    def owner_signer(self) -> Signer:
        """The owner's own signer (for re-reading the account with :meth:`on_chain`)."""
        return self._owner

    @property
    def deployed(self) -> bool:
        return self._deployed

    def mark_deployed(self) -> None:
        """Stop wrapping: the account now has code."""
        self._deployed = True

    def sign_typed_data(
        self,
        domain: Any,
        types: dict[str, Any],
        primary_type: str,
        message: dict[str, Any],
    ) -> bytes:
        inner = self._owner.sign_typed_data(domain, types, primary_type, message)
        if not isinstance(inner, bytes) or len(inner) != 65:
            raise SigningError("the owner's signer returned something other than 65 bytes")
        return inner if self._deployed else wrap(self._factory, self._calldata, inner)

    def owner_signature(self, signature: bytes) -> bytes:
        """The owner's 65-byte signature inside one of this signer's signatures."""
        wrapped = unwrap(signature)
        if wrapped is None:
            return signature
        if isinstance(wrapped, str):
            raise SigningError(f"the signature is not a well-formed ERC-6492 wrapper ({wrapped})")
        return wrapped.signature

    def __repr__(self) -> str:
        return f"SmartAccountSigner(address={self._address!r}, owner={self.owner!r})"
