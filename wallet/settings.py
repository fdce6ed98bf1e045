"""``WalletSettings``: where keys live and how their passphrase is supplied.

Built and passed in, never a module-level global. Every field can come from an
environment variable with the ``FARTHING_WALLET_`` prefix; the data directory
is shared by all packages and read from ``FARTHING_DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SCRYPT_N_DEFAULT", "WalletSettings", "default_data_dir"]

# geth's "standard" scrypt cost; about half a second on a laptop core.
SCRYPT_N_DEFAULT = 2**18


def default_data_dir() -> Path:
    return Path.home() / ".farthing"


class WalletSettings(BaseSettings):
    """Settings for keys, keystores and the chain a wallet command talks to."""

    model_config = SettingsConfigDict(env_prefix="FARTHING_WALLET_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("FARTHING_DATA_DIR", "data_dir"),
    )
    passphrase: SecretStr | None = Field(
        default=None,
        description="Keystore passphrase (FARTHING_WALLET_PASSPHRASE).",
    )
    passphrase_file: Path | None = Field(
        default=None,
        description="File whose first line is the keystore passphrase.",
    )
    scrypt_n: int = Field(default=SCRYPT_N_DEFAULT, ge=2**10, le=2**20)
    network: str = "local"
    rpc_url: str | None = None
    rpc_timeout_s: float = Field(default=10.0, gt=0, le=300)

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"
