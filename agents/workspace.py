"""Where ``farthing agent`` finds its wallet, chain and books, and how it wires them up.

Defaults, each overridable by a flag or an environment variable:

* **data directory**: ``~/.farthing`` (``--data-dir``, ``FARTHING_DATA_DIR``);
* **wallet**: the encrypted keystore ``<data dir>/keys/default.json``
  (``--wallet NAME``, ``FARTHING_AGENT_WALLET``), unlocked with
  ``FARTHING_WALLET_PASSPHRASE`` or ``--passphrase-file``, as ``farthing wallet`` does;
* **chain**: the local dev chain that ``farthing chain dev`` started, with its
  stablecoin (``--network``, ``--rpc-url``, ``--token`` as for ``farthing wallet``);
* **books**: the ledger's SQLite file ``<data dir>/ledger.sqlite``
  (``--database-url``, ``FARTHING_LEDGER_DATABASE_URL``), migrated on first use;
* **agent id**: ``agent`` (``--agent-id``): its budget and policy live under this name.

Deposits into the wallet are booked as the agent's funding when a command
opens the workspace: on a local dev chain every deposit since block 0, on a
real network those since the workspace was first opened (book earlier ones
with ``farthing agent deposits --from-block N``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from farthing.agents.books import AgentBooks
from farthing.agents.payer import Payer
from farthing.agents.settings import AgentSettings
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.wallet.keystore import (
    keystore_path,
    load_keystore_info,
    read_passphrase,
    unlock_keystore,
)
from farthing.wallet.money import Asset
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner
from farthing.wallet.target import ChainTarget, resolve_target

__all__ = ["Workspace", "open_database", "open_workspace"]


@dataclass
class Workspace:
    """An open chain and token, the agent's books, and (for paying commands) its wallet."""

    settings: AgentSettings
    target: ChainTarget
    database: LedgerDatabase
    books: AgentBooks
    signer: LocalSigner | None = None
    # The wallet's address, known without its passphrase when its keystore exists.
    address: str | None = None
    _payer: Payer | None = field(default=None, repr=False)

    @property
    def payer(self) -> Payer:
        if self.signer is None:
            raise RuntimeError("this workspace was opened without its wallet")
        if self._payer is None:
            self._payer = Payer(
                signer=self.signer,
                chain=self.target.chain,
                asset=self.target.asset,
                books=self.books,
                settings=self.settings,
            )
        return self._payer

    @property
    def asset(self) -> Asset:
        """The token the agent pays in, as read from the chain."""
        return self.target.asset

    def close(self) -> None:
        self.database.dispose()
        self.target.chain.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_database(settings: AgentSettings, database_url: str | None = None) -> LedgerDatabase:
    """The ledger database (created and migrated if needed)."""
    values: dict[str, object] = {"data_dir": settings.data_dir}
    if database_url is not None:
        values["database_url"] = database_url
    database = LedgerDatabase(LedgerSettings(**values))  # type: ignore[arg-type]
    upgrade_database(database)
    return database


def open_workspace(
    settings: AgentSettings,
    *,
    network: str | None = None,
    rpc_url: str | None = None,
    token: str | None = None,
    database_url: str | None = None,
    passphrase_file: Path | None = None,
    with_wallet: bool = True,
    from_block: int | None = None,
) -> Workspace:
    """Open the agent's wallet, chain and books; see the module doc for the defaults.

    The public way to open an agent from Python, as the CLI does::

        with open_workspace(AgentSettings(agent_id="research-bot")) as agent:
            ...  # agent.payer, agent.books, agent.asset

    The books are created (and migrated) on first use, and the wallet's
    deposits are booked as the agent's funding before it returns.
    """
    wallet_settings = WalletSettings(data_dir=settings.data_dir.expanduser())
    signer = None
    if with_wallet:
        # The passphrase is read and the key decrypted before anything else,
        # so a wrong passphrase costs no chain or database work.
        passphrase = read_passphrase(wallet_settings, passphrase_file=passphrase_file)
        signer = unlock_keystore(wallet_settings, settings.wallet, passphrase)
    address = signer.address if signer is not None else _keystore_address(wallet_settings, settings)
    target = resolve_target(wallet_settings, network=network, rpc_url=rpc_url, token=token)
    database = open_database(settings, database_url)
    books = AgentBooks(
        database, agent_id=settings.agent_id, asset=target.asset, ledger=settings.ledger
    ).ensure()
    if address is not None:
        start = from_block
        if start is None and not target.is_local:
            start = target.chain.block_number()
        books.sync_deposits(target.chain, address, from_block=start)
    return Workspace(settings, target, database, books, signer, address)


def _keystore_address(wallet_settings: WalletSettings, settings: AgentSettings) -> str | None:
    # The address is stored in the clear beside the encrypted key: reading it
    # needs no passphrase. No keystore (a command that needs none): None.
    if not keystore_path(wallet_settings, settings.wallet).exists():
        return None
    return load_keystore_info(wallet_settings, settings.wallet).address
