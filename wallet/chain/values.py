"""The chain's values: calls, results, logs, transfers, and anvil's dev accounts.

Every outcome a :class:`~farthing.wallet.chain.base.Chain` reports is one of
these frozen values; a revert is a :class:`TxResult` with ``ok=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_utils.crypto import keccak
from pydantic import SecretStr

from farthing.invariant import invariant
from farthing.wallet.signer import LocalSigner

__all__ = [
    "ANVIL_DEV_MNEMONIC",
    "DEV_HD_PATH",
    "TRANSFER_TOPIC",
    "Call",
    "CallResult",
    "DevAccount",
    "LogEntry",
    "TransferEvent",
    "TxResult",
    "anvil_dev_accounts",
]

# The well-known public mnemonic of anvil's (and hardhat's) dev accounts. The
# memory chain funds the same accounts, so both backends share addresses.
ANVIL_DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_HD_PATH = "m/44'/60'/0'/0"

TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")


@dataclass(frozen=True, slots=True)
class Call:
    """What to run on-chain: a target (``None`` creates a contract), calldata, value in wei."""

    to: str | None
    data: bytes
    value: int = 0


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of a read-only ``eth_call``."""

    ok: bool
    return_data: bytes
    reason: str | None = None
    revert_message: str | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event log from a receipt."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True, slots=True)
class TxResult:
    """The outcome of sending a transaction; a revert is a value, not an exception.

    ``tx_hash`` is ``None`` when the simulation refused the call and nothing
    was sent. ``reason == "receipt_timeout"`` means the transaction was sent
    (``tx_hash`` is set) but no receipt arrived in time: it may still land, so
    reconcile before retrying.
    """

    ok: bool
    tx_hash: str | None
    reason: str | None = None
    revert_message: str | None = None
    block_number: int | None = None
    gas_used: int | None = None
    logs: tuple[LogEntry, ...] = ()
    contract_address: str | None = None

    @property
    def sent(self) -> bool:
        return self.tx_hash is not None


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """An ERC-20 ``Transfer`` log, as reconciliation reads it."""

    token: str
    tx_hash: str
    log_index: int
    block_number: int
    from_address: str
    to: str
    value: int


@dataclass(frozen=True, slots=True)
class DevAccount:
    """A funded account of a dev chain; its key is public knowledge, not a secret."""

    address: str
    private_key: SecretStr

    def signer(self) -> LocalSigner:
        return LocalSigner(self.private_key)


def anvil_dev_accounts(count: int = 10) -> tuple[DevAccount, ...]:
    """Anvil's well-known dev accounts (mnemonic ``test test … junk``)."""
    invariant(0 < count <= 100, "dev account count must be between 1 and 100")
    seed = seed_from_mnemonic(ANVIL_DEV_MNEMONIC, "")
    accounts = []
    for index in range(count):
        key = key_from_seed(seed, f"{DEV_HD_PATH}/{index}")
        signer = LocalSigner(key)
        accounts.append(DevAccount(signer.address, signer.private_key))
    return tuple(accounts)
