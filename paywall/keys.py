"""Secrets from files: the facilitator's key and the bearer token.

``--key-file`` takes either of two forms, told apart by content:

* an **encrypted keystore** (Web3 Secret Storage v3, as ``farthing wallet new``
  writes): decrypted with the passphrase from ``FARTHING_WALLET_PASSPHRASE``
  or ``--passphrase-file``, as every wallet command does;
* a **plain hex key** (64 hex digits, optional ``0x``).

Either form, and a token file, is read only if it is private to its owner (no
group or other permission bits), by the one rule every command that reads a
secret follows (``farthing.wallet.keyfile.read_secret_file``); a file others
could read or write is refused with ``chmod 600 FILE`` as the fix.

A token file holds the bearer token on its first line; it must be at least 16
characters, so a placeholder is refused. Neither a key nor a token is ever
printed, logged or put in an error message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from eth_account import Account
from pydantic import SecretStr

from farthing.wallet.errors import KeyFileError, WrongPassphraseError
from farthing.wallet.keyfile import read_secret_file
from farthing.wallet.keystore import parse_private_key, read_passphrase
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner

__all__ = ["TOKEN_LENGTH_MIN", "load_key_file", "load_token_file"]

TOKEN_LENGTH_MIN: Final = 16
_FILE_BYTES_MAX: Final = 64 * 1024


def _read_private(path: Path, what: str) -> str:
    return read_secret_file(path, what=what, bytes_max=_FILE_BYTES_MAX)


def load_key_file(
    path: Path, *, settings: WalletSettings | None = None, passphrase_file: Path | None = None
) -> LocalSigner:
    """The signer in ``path``: an encrypted keystore, or a private plain hex key file."""
    text = _read_private(path, "key file")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise KeyFileError(f"the key file {path} is neither a keystore nor a hex key") from None
        if not isinstance(data, dict) or data.get("version") != 3 or "crypto" not in data:
            raise KeyFileError(f"{path} is not a version 3 keystore")
        passphrase = read_passphrase(settings or WalletSettings(), passphrase_file=passphrase_file)
        try:
            key = Account.decrypt(data, passphrase.get_secret_value())
        except ValueError as exc:
            if "MAC mismatch" in str(exc):
                raise WrongPassphraseError(f"wrong passphrase for keystore {path}") from None
            raise KeyFileError(f"keystore {path} is corrupt or unsupported") from None
        except (KeyError, TypeError):
            raise KeyFileError(f"keystore {path} is corrupt or unsupported") from None
        return LocalSigner(SecretStr("0x" + bytes(key).hex()))
    lines = stripped.splitlines()
    if len(lines) != 1:
        raise KeyFileError(f"the key file {path} must hold one hex key on one line")
    return LocalSigner(parse_private_key(lines[0]))


def load_token_file(path: Path) -> SecretStr:
    """The bearer token on the first line of a private file."""
    text = _read_private(path, "token file")
    token = text.splitlines()[0].strip() if text.strip() else ""
    if len(token) < TOKEN_LENGTH_MIN:
        raise KeyFileError(f"the token in {path} is shorter than {TOKEN_LENGTH_MIN} characters")
    if not token.isascii() or any(c.isspace() for c in token):
        raise KeyFileError(f"the token in {path} must be printable ASCII without spaces")
    return SecretStr(token)
