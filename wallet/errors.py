"""Exceptions raised by ``farthing.wallet``.

::

    FarthingError                      (farthing.errors)
    └── WalletError
        ├── AmountError                an amount or price that cannot be exact atomic units
        ├── AddressError               a malformed address
        ├── AuthorizationError         a malformed EIP-3009 authorization, domain or wire payload
        ├── NetworkError               an unknown network name or CAIP-2 id
        ├── KeyFileError               a key or keystore that cannot be read or decrypted
        │   └── WrongPassphraseError   the keystore's MAC does not match the passphrase
        ├── PassphraseError            no passphrase available, or a placeholder one
        ├── ChainError                 a chain problem the caller cannot treat as a result
        │   ├── ChainUnavailableError  the RPC endpoint (named in the message) did not answer,
        │   │                          timed out, or failed the request (a JSON-RPC error)
        │   └── DeploymentError        a contract could not be deployed or found
        └── SigningError               a signature failed its own post-signing check

Expected outcomes, such as an authorization the token rejects, are values with a
snake_case reason (see ``farthing.wallet.chain.TxResult``), not exceptions.
"""

from __future__ import annotations

from farthing.errors import FarthingError

__all__ = [
    "AddressError",
    "AmountError",
    "AuthorizationError",
    "ChainError",
    "ChainUnavailableError",
    "DeploymentError",
    "KeyFileError",
    "NetworkError",
    "PassphraseError",
    "SigningError",
    "WalletError",
    "WrongPassphraseError",
]


class WalletError(FarthingError):
    """Root of every error raised by ``farthing.wallet``."""


class AmountError(WalletError, ValueError):
    """An amount is negative, malformed, or has more decimals than the asset."""


class AddressError(WalletError, ValueError):
    """A string is not a 20-byte hex address."""


class AuthorizationError(WalletError, ValueError):
    """An authorization, its EIP-712 domain, or its x402 wire form is malformed."""


class NetworkError(WalletError, LookupError):
    """A network name or CAIP-2 identifier is not in the registry."""


class KeyFileError(WalletError):
    """A private key or keystore file cannot be read, parsed or decrypted."""


class WrongPassphraseError(KeyFileError):
    """The keystore could not be decrypted with the given passphrase."""


class PassphraseError(WalletError):
    """No usable keystore passphrase was supplied."""


class ChainError(WalletError):
    """The chain could not do what was asked, for a reason that is not a result."""


class ChainUnavailableError(ChainError):
    """The JSON-RPC endpoint did not answer, timed out or failed the request; the message names the URL."""


class DeploymentError(ChainError):
    """A contract could not be deployed, or no code exists at its address."""


class SigningError(WalletError):
    """A fresh signature did not recover to its signer: a bug or a broken signer."""
