"""Keys on disk are encrypted keystore v3 (scrypt) files; passphrases come from env or file and never leak."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from farthing.wallet.errors import KeyFileError, PassphraseError, WrongPassphraseError
from farthing.wallet.keystore import (
    create_keystore,
    list_keystores,
    load_keystore_info,
    parse_private_key,
    read_passphrase,
    unlock_keystore,
    write_keystore,
)
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner

PASSPHRASE = SecretStr("correct horse battery")
TEST_KEY = "0x" + "4c" * 32  # a throwaway test key


@pytest.fixture
def settings(tmp_path: Path) -> WalletSettings:
    # A low scrypt cost keeps the tests fast; the default is 2**18.
    return WalletSettings(data_dir=tmp_path, scrypt_n=2**12)


def test_create_then_unlock(settings: WalletSettings) -> None:
    info = create_keystore(settings, "alice", PASSPHRASE)
    data = json.loads(info.path.read_text())
    assert data["version"] == 3
    assert data["crypto"]["kdf"] == "scrypt"
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    signer = unlock_keystore(settings, "alice", PASSPHRASE)
    assert signer.address == info.address
    assert load_keystore_info(settings, "alice").address == info.address
    assert [k.name for k in list_keystores(settings)] == ["alice"]


def test_import_keeps_the_key_secret(settings: WalletSettings) -> None:
    key = parse_private_key(TEST_KEY[2:])
    info = write_keystore(settings, "imported", LocalSigner(key), PASSPHRASE)
    text = info.path.read_text()
    assert TEST_KEY[2:] not in text.lower()
    assert TEST_KEY[2:] not in repr(LocalSigner(key)).lower()
    assert "4c4c" not in str(key)


def test_wrong_passphrase(settings: WalletSettings) -> None:
    create_keystore(settings, "bob", PASSPHRASE)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        unlock_keystore(settings, "bob", SecretStr("not the passphrase"))


def test_refuses_to_overwrite(settings: WalletSettings) -> None:
    create_keystore(settings, "carol", PASSPHRASE)
    with pytest.raises(KeyFileError, match="already exists"):
        create_keystore(settings, "carol", PASSPHRASE)


@pytest.mark.parametrize("weak", ["", "short", "changeme", "password", "PASSWORD "])
def test_refuses_weak_or_placeholder_passphrases(settings: WalletSettings, weak: str) -> None:
    with pytest.raises(PassphraseError):
        create_keystore(settings, "dave", SecretStr(weak))


@pytest.mark.parametrize(
    "bad_key",
    ["0x1234", "zz" * 32, "0x" + "00" * 32, "0x" + "ff" * 32, TEST_KEY + "00"],
)
def test_malformed_keys_are_refused_without_echo(bad_key: str) -> None:
    with pytest.raises(KeyFileError) as excinfo:
        parse_private_key(bad_key)
    assert bad_key.removeprefix("0x")[:16] not in str(excinfo.value)


def test_passphrase_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARTHING_WALLET_PASSPHRASE", "from the environment")
    assert read_passphrase(WalletSettings(data_dir=tmp_path)).get_secret_value() == (
        "from the environment"
    )
    secret_file = tmp_path / "pass.txt"
    secret_file.write_text("from a file\nignored second line\n")
    secret_file.chmod(0o600)  # a passphrase file others can read is refused
    got = read_passphrase(WalletSettings(data_dir=tmp_path), passphrase_file=secret_file)
    assert got.get_secret_value() == "from a file"


def test_missing_passphrase_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARTHING_WALLET_PASSPHRASE", raising=False)
    with pytest.raises(PassphraseError, match="FARTHING_WALLET_PASSPHRASE"):
        read_passphrase(WalletSettings(data_dir=tmp_path))
    with pytest.raises(PassphraseError, match="cannot read passphrase file"):
        read_passphrase(WalletSettings(data_dir=tmp_path), passphrase_file=tmp_path / "nope")


def test_corrupt_or_missing_keystore(settings: WalletSettings) -> None:
    with pytest.raises(KeyFileError, match="farthing wallet new"):
        unlock_keystore(settings, "ghost", PASSPHRASE)
    settings.keys_dir.mkdir(parents=True)
    (settings.keys_dir / "junk.json").write_text("{not json")
    (settings.keys_dir / "junk.json").chmod(0o600)  # past the private-file rule, to the JSON
    with pytest.raises(KeyFileError, match="not valid JSON"):
        unlock_keystore(settings, "junk", PASSPHRASE)
    with pytest.raises(KeyFileError, match="invalid wallet name"):
        unlock_keystore(settings, "../escape", PASSPHRASE)
