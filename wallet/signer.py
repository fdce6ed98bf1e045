"""Signers: who can sign typed data (EIP-712) and transactions for an address.

``Signer`` is the seam: a local key, a KMS or a hardware wallet can stand
behind it. It matches the x402 SDK's ``ClientEvmSigner`` shape (``address`` and
``sign_typed_data``), so a Farthing signer can be handed to the official
client as it is.

The private key of a :class:`LocalSigner` is held as a ``SecretStr`` and never
appears in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from pydantic import SecretStr

from farthing.wallet.errors import KeyFileError

__all__ = ["LocalSigner", "Signer", "TxSigner", "typed_data_domain_dict"]


@runtime_checkable
class Signer(Protocol):
    """Signs EIP-712 typed data for one address."""

    @property
    def address(self) -> str:
        """The checksummed address whose key signs."""
        ...

    def sign_typed_data(
        self,
        domain: Any,
        types: dict[str, Any],
        primary_type: str,
        message: dict[str, Any],
    ) -> bytes:
        """Return a 65-byte (r, s, v) signature over the EIP-712 digest."""
        ...


@runtime_checkable
class TxSigner(Protocol):
    """Signs raw transactions for one address (used to send on-chain)."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        """Return the raw signed transaction bytes."""
        ...


def typed_data_domain_dict(domain: Any) -> dict[str, Any]:
    """Accept a plain dict or an x402 ``TypedDataDomain``-like object."""
    if isinstance(domain, dict):
        return domain
    return {
        "name": domain.name,
        "version": domain.version,
        "chainId": domain.chain_id,
        "verifyingContract": domain.verifying_contract,
    }


def _fields_as_dicts(types: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for type_name, fields in types.items():
        out[type_name] = [
            f if isinstance(f, dict) else {"name": f.name, "type": f.type} for f in fields
        ]
    return out


class LocalSigner:
    """A signer backed by a private key held in this process."""

    __slots__ = ("_account", "_key")

    def __init__(self, private_key: SecretStr | str | bytes) -> None:
        if isinstance(private_key, SecretStr):
            secret = private_key
        elif isinstance(private_key, bytes):
            secret = SecretStr("0x" + private_key.hex())
        else:
            secret = SecretStr(private_key)
        try:
            account: LocalAccount = Account.from_key(secret.get_secret_value())
        except Exception:  # noqa: BLE001 -- eth-keys errors would echo the key; say nothing
            raise KeyFileError("malformed private key (want 32 bytes as 64 hex digits)") from None
        self._account = account
        self._key = secret

    @classmethod
    def generate(cls) -> LocalSigner:
        """A signer for a fresh random key (from the OS's CSPRNG)."""
        account = Account.create()
        return cls(SecretStr("0x" + bytes(account.key).hex()))

    @property
    def address(self) -> str:
        return str(self._account.address)

    @property
    def private_key(self) -> SecretStr:
        """The key, wrapped so that printing it shows ``**********``."""
        return self._key

    def sign_typed_data(
        self,
        domain: Any,
        types: dict[str, Any],
        primary_type: str,
        message: dict[str, Any],
    ) -> bytes:
        full_types = dict(_fields_as_dicts(types))
        full_types.pop("EIP712Domain", None)
        signed = self._account.sign_typed_data(
            domain_data=typed_data_domain_dict(domain),
            message_types=full_types,
            message_data=message,
        )
        return bytes(signed.signature)

    def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)

    def unsafe_sign_hash(self, digest: bytes) -> bytes:
        """Sign a raw 32-byte digest. Only for known-answer tests and benchmarks."""
        return bytes(self._account.unsafe_sign_hash(Hash32(digest)).signature)

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address!r})"
