"""Every command that reads a key, keystore, passphrase or token file refuses one that group or others may use, with the same line.

Each reader runs as a real ``farthing`` process on real files made with the
modes under test: a 0644 file is refused with one line naming the file and
``chmod 600 FILE``, the secret never shows, and the same file at 0600 is
accepted. The paid inference gateway reads its key against a real anvil.
Below the commands, ``read_secret_file`` is checked for every mode class and
for files that are not regular files.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from farthing.devchain.node import AnvilNode
from farthing.wallet.errors import KeyFileError, PassphraseError
from farthing.wallet.keyfile import read_secret_file
from farthing.wallet.keystore import create_keystore, read_passphrase, unlock_keystore
from farthing.wallet.settings import WalletSettings
from tests.conftest import TEST_PASSPHRASE, cli_env, run_farthing
from tests.paywall.conftest import deploy_env

SECRET_KEY = "0x" + "5e" * 32
ADDRESS = Account.from_key(SECRET_KEY).address
DEAD_RPC = "http://127.0.0.1:9"  # nothing listens: a command that gets this far accepted the key


def refusal(path: Path, what: str) -> str:
    """The one line every reader prints for a file others can read."""
    return f"error: the {what} {path} is readable by other users (mode 0644); run: chmod 600 {path}"


def _file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _keystore_text() -> str:
    return json.dumps(Account.encrypt(SECRET_KEY, TEST_PASSPHRASE, kdf="scrypt", iterations=2**12))


def _wallet_import(key: Path) -> list[str]:
    return ["wallet", "import", "--name", "imported", "--key-file", str(key), "--json"]


def _facilitator_serve(key: Path) -> list[str]:
    return [
        "facilitator",
        "serve",
        "--rpc-url",
        DEAD_RPC,
        "--key-file",
        str(key),
        "--rpc-timeout-s",
        "1",
    ]


KEY_READERS: list[tuple[str, Callable[[Path], list[str]], bool]] = [
    ("wallet import", _wallet_import, False),
    ("facilitator serve, hex key", _facilitator_serve, False),
    ("facilitator serve, keystore", _facilitator_serve, True),
]


def _key_file(tmp_path: Path, mode: int, keystore: bool) -> Path:
    text = _keystore_text() if keystore else SECRET_KEY + "\n"
    return _file(tmp_path / "the.key", text, mode)


@pytest.mark.parametrize(
    ("argv", "keystore"), [r[1:] for r in KEY_READERS], ids=[r[0] for r in KEY_READERS]
)
def test_a_key_file_others_can_read_is_refused_with_one_line(
    tmp_path: Path, argv: Callable[[Path], list[str]], keystore: bool
) -> None:
    key = _key_file(tmp_path, 0o644, keystore)
    result = run_farthing(argv(key), env=cli_env(tmp_path))
    assert result.code == 1
    assert result.stderr.strip() == refusal(key, "key file")
    assert SECRET_KEY[2:] not in result.stdout + result.stderr
    assert not (tmp_path / "keys" / "imported.json").exists()


@pytest.mark.parametrize(
    ("argv", "keystore"), [r[1:] for r in KEY_READERS], ids=[r[0] for r in KEY_READERS]
)
def test_the_same_key_file_at_0600_is_accepted(
    tmp_path: Path, argv: Callable[[Path], list[str]], keystore: bool
) -> None:
    key = _key_file(tmp_path, 0o600, keystore)
    result = run_farthing(argv(key), env=cli_env(tmp_path))
    assert "chmod" not in result.stderr
    assert SECRET_KEY[2:] not in result.stdout + result.stderr
    if argv is _wallet_import:
        assert result.code == 0, result.stderr
        assert result.json()["address"] == ADDRESS
    else:
        assert result.code == 1 and DEAD_RPC in result.stderr  # past the key, at the chain


def test_a_passphrase_file_others_can_read_is_refused_by_every_reader(tmp_path: Path) -> None:
    loose = _file(tmp_path / "passphrase", TEST_PASSPHRASE + "\n", 0o644)
    key = _key_file(tmp_path, 0o600, keystore=False)
    keystore = _file(tmp_path / "keystore.json", _keystore_text(), 0o600)
    env = cli_env(tmp_path)
    for argv in (
        ["wallet", "new", "--passphrase-file", str(loose)],
        [*_wallet_import(key), "--passphrase-file", str(loose)],
        [*_facilitator_serve(keystore), "--passphrase-file", str(loose)],
    ):
        result = run_farthing(argv, env=env)
        assert result.code == 1, argv
        assert result.stderr.strip() == refusal(loose, "passphrase file"), argv
        assert TEST_PASSPHRASE not in result.stdout + result.stderr
    os.chmod(loose, 0o600)
    made = run_farthing(["wallet", "new", "--passphrase-file", str(loose), "--json"], env=env)
    assert made.code == 0, made.stderr


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key = _key_file(tmp_path, 0o600, keystore=False)
    token = _file(tmp_path / "token", "a-bearer-token-for-tests-only\n", 0o644)
    result = run_farthing(
        [*_facilitator_serve(key), "--token-file", str(token)], env=cli_env(tmp_path)
    )
    assert result.stderr.strip() == refusal(token, "token file")
    assert "a-bearer-token" not in result.stdout + result.stderr


@pytest.mark.anvil
def test_the_paid_gateway_refuses_a_key_file_others_can_read(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    env_ = deploy_env(anvil)
    key = _key_file(tmp_path, 0o644, keystore=False)
    result = run_farthing(
        ["inference", "gateway", "--pay-to", env_.merchant, "--rpc-url", anvil.rpc_url,
         "--token", env_.asset.address, "--key-file", str(key), "--port", "0"],
        env=cli_env(tmp_path),
    )  # fmt: skip
    env_.chain.close()
    assert result.code == 1
    assert result.stderr.strip() == refusal(key, "key file")


def test_a_wallet_keystore_others_can_read_is_not_unlocked(tmp_path: Path) -> None:
    settings = WalletSettings(data_dir=tmp_path, scrypt_n=2**12)
    info = create_keystore(settings, "w", SecretStr(TEST_PASSPHRASE))
    os.chmod(info.path, 0o644)
    with pytest.raises(KeyFileError) as refused:
        unlock_keystore(settings, "w", SecretStr(TEST_PASSPHRASE))
    assert f"error: {refused.value}" == refusal(info.path, "keystore")
    os.chmod(info.path, 0o600)
    assert unlock_keystore(settings, "w", SecretStr(TEST_PASSPHRASE)).address == info.address


# ------------------------------------------------------------------ the one rule


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o644, "readable by other users"),
        (0o640, "readable by other users"),
        (0o604, "readable by other users"),
        (0o620, "writable by other users"),
        (0o602, "writable by other users"),
        (0o610, "open to other users"),
    ],
)
def test_any_group_or_other_bit_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = _file(tmp_path / "secret", "s3cret-value\n", mode)
    with pytest.raises(KeyFileError) as refused:
        read_secret_file(path, what="key file")
    message = str(refused.value)
    assert f"is {who} (mode {mode:04o}); run: chmod 600 {path}" in message
    assert "s3cret-value" not in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_modes_are_read(tmp_path: Path, mode: int) -> None:
    path = _file(tmp_path / "secret", "s3cret-value\n", mode)
    assert read_secret_file(path, what="key file") == "s3cret-value\n"


def test_what_is_not_a_private_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file .*missing"):
        read_secret_file(tmp_path / "missing", what="key file")
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_secret_file(tmp_path, what="key file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):  # and it does not hang
        read_secret_file(fifo, what="key file")
    big = _file(tmp_path / "big", "x" * 100, 0o600)
    with pytest.raises(KeyFileError, match="larger than 10 bytes"):
        read_secret_file(big, what="key file", bytes_max=10)
    assert stat.S_IMODE(big.stat().st_mode) == 0o600


def test_read_passphrase_applies_the_rule_as_a_passphrase_error(tmp_path: Path) -> None:
    settings = WalletSettings(data_dir=tmp_path)
    loose = _file(tmp_path / "pass", TEST_PASSPHRASE + "\n", 0o640)
    with pytest.raises(PassphraseError, match="chmod 600"):
        read_passphrase(settings, passphrase_file=loose)
    os.chmod(loose, 0o600)
    assert read_passphrase(settings, passphrase_file=loose).get_secret_value() == TEST_PASSPHRASE
