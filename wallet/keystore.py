"""Encrypted keystores (Web3 Secret Storage v3 with scrypt) and passphrases.

A key on disk is always encrypted. The passphrase comes from an environment
variable or a file, never from a command-line argument (arguments show up in
``ps`` and shell history). Files are written with mode 0600, atomically, and
a passphrase file or a keystore being unlocked is read only if it is private
to its owner (``farthing.wallet.keyfile``, the rule every reader follows).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_typing import HexStr
from pydantic import SecretStr

from farthing.wallet.address import checksum
from farthing.wallet.errors import KeyFileError, PassphraseError, WrongPassphraseError
from farthing.wallet.keyfile import read_secret_file
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner

__all__ = [
    "KeystoreInfo",
    "create_keystore",
    "keystore_path",
    "list_keystores",
    "load_keystore_info",
    "parse_private_key",
    "read_passphrase",
    "unlock_keystore",
    "write_keystore",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_PASSPHRASE_MIN_LEN = 8
# Passphrases that appear in tutorials and templates; a keystore "protected"
# by one of these is not protected at all.
_PLACEHOLDER_PASSPHRASES = frozenset(
    {"changeme", "change-me", "password", "passphrase", "secret", "12345678", "test", "xxxxxxxx"}
)


@dataclass(frozen=True, slots=True)
class KeystoreInfo:
    """What can be read from a keystore without its passphrase."""

    name: str
    address: str
    path: Path


def keystore_path(settings: WalletSettings, name: str) -> Path:
    if not _NAME_RE.match(name):
        raise KeyFileError(
            f"invalid wallet name {name!r}: use letters, digits, '.', '_' or '-' (max 64)"
        )
    return settings.keys_dir / f"{name}.json"


def read_passphrase(settings: WalletSettings, *, passphrase_file: Path | None = None) -> SecretStr:
    """The keystore passphrase: from ``passphrase_file``, the settings' file, or its env var."""
    path = passphrase_file or settings.passphrase_file
    if path is not None:
        text = read_secret_file(path, what="passphrase file", error=PassphraseError)
        value = text.splitlines()[0] if text else ""
    elif settings.passphrase is not None:
        value = settings.passphrase.get_secret_value()
    else:
        raise PassphraseError(
            "no keystore passphrase: set FARTHING_WALLET_PASSPHRASE or pass --passphrase-file"
        )
    if not value:
        raise PassphraseError("the keystore passphrase is empty")
    return SecretStr(value)


def _check_new_passphrase(passphrase: SecretStr) -> None:
    value = passphrase.get_secret_value()
    if len(value) < _PASSPHRASE_MIN_LEN:
        raise PassphraseError(
            f"refusing a passphrase shorter than {_PASSPHRASE_MIN_LEN} characters"
        )
    if value.strip().lower() in _PLACEHOLDER_PASSPHRASES:
        raise PassphraseError("refusing a placeholder passphrase; choose a real one")


def parse_private_key(text: str) -> SecretStr:
    """Validate a hex private key (with or without 0x) without echoing it on error."""
    cleaned = text.strip()
    if not _KEY_RE.match(cleaned):
        raise KeyFileError("malformed private key (want 32 bytes as 64 hex digits)")
    if not cleaned.startswith("0x"):
        cleaned = "0x" + cleaned
    # Zero and values >= the curve order are not valid secp256k1 keys.
    LocalSigner(SecretStr(cleaned))
    return SecretStr(cleaned)


def _atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_keystore(
    settings: WalletSettings,
    name: str,
    signer: LocalSigner,
    passphrase: SecretStr,
    *,
    overwrite: bool = False,
) -> KeystoreInfo:
    """Encrypt ``signer``'s key with scrypt and save it as ``<keys_dir>/<name>.json``."""
    _check_new_passphrase(passphrase)
    path = keystore_path(settings, name)
    if path.exists() and not overwrite:
        raise KeyFileError(f"a wallet named {name!r} already exists at {path}")
    encrypted = Account.encrypt(
        HexStr(signer.private_key.get_secret_value()),
        passphrase.get_secret_value(),
        kdf="scrypt",
        iterations=settings.scrypt_n,
    )
    _atomic_write(path, json.dumps(encrypted, indent=2) + "\n")
    return KeystoreInfo(name=name, address=signer.address, path=path)


def create_keystore(
    settings: WalletSettings, name: str, passphrase: SecretStr, *, overwrite: bool = False
) -> KeystoreInfo:
    """Generate a fresh key and save it encrypted."""
    return write_keystore(settings, name, LocalSigner.generate(), passphrase, overwrite=overwrite)


def _read_keystore_json(path: Path, *, to_unlock: bool = False) -> dict[str, Any]:
    """The keystore's JSON; held to the private-file rule when its key is to be unlocked.

    Reading only its public address (``wallet show``) is not held to it, so a
    keystore with loose permissions is listed, and refused when it is used.
    """
    if not path.exists():
        raise KeyFileError(f"no wallet keystore at {path} (create one with `farthing wallet new`)")
    if to_unlock:
        raw = read_secret_file(path, what="keystore")
    else:
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFileError(f"cannot read keystore {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise KeyFileError(f"keystore {path} is not valid JSON") from None
    if not isinstance(data, dict) or data.get("version") != 3 or "crypto" not in data:
        raise KeyFileError(f"{path} is not a version 3 keystore")
    return data


def load_keystore_info(settings: WalletSettings, name: str) -> KeystoreInfo:
    path = keystore_path(settings, name)
    data = _read_keystore_json(path)
    address = data.get("address")
    if not isinstance(address, str):
        raise KeyFileError(f"keystore {path} has no address")
    return KeystoreInfo(name=name, address=checksum("0x" + address.removeprefix("0x")), path=path)


def list_keystores(settings: WalletSettings) -> list[KeystoreInfo]:
    if not settings.keys_dir.is_dir():
        return []
    found = []
    for path in sorted(settings.keys_dir.glob("*.json")):
        try:
            found.append(load_keystore_info(settings, path.stem))
        except KeyFileError:
            continue
    return found


def unlock_keystore(settings: WalletSettings, name: str, passphrase: SecretStr) -> LocalSigner:
    """Decrypt a keystore; a wrong passphrase raises ``WrongPassphraseError``."""
    path = keystore_path(settings, name)
    data = _read_keystore_json(path, to_unlock=True)
    try:
        key = Account.decrypt(data, passphrase.get_secret_value())
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPassphraseError(f"wrong passphrase for keystore {path}") from None
        raise KeyFileError(f"keystore {path} is corrupt or unsupported") from None
    except (KeyError, TypeError):
        raise KeyFileError(f"keystore {path} is corrupt or unsupported") from None
    signer = LocalSigner(SecretStr("0x" + bytes(key).hex()))
    recorded = data.get("address")
    if (
        isinstance(recorded, str)
        and recorded.lower().removeprefix("0x") != signer.address.lower()[2:]
    ):
        raise KeyFileError(f"keystore {path} decrypts to a different address than it records")
    return signer
