"""The dev chain's deployment record: where its contracts are, read from the data dir.

``farthing chain dev`` (:mod:`farthing.devchain.node`) deploys the contracts and
writes this record as ``deployment.json`` beside anvil's state file; every
other command finds the local token through :func:`load_dev_deployment`. The
record lives in the wallet so that reading it needs nothing above the wallet.

Layout of a state directory (default ``$FARTHING_DATA_DIR/chain``)::

    anvil-state.json   anvil's own dump (accounts, code, storage, blocks)
    deployment.json    the DevDeployment record
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farthing.wallet.address import checksum
from farthing.wallet.chain import anvil_dev_accounts
from farthing.wallet.errors import DeploymentError
from farthing.wallet.money import Asset
from farthing.wallet.networks import (
    ANVIL_CHAIN_ID,
    CANONICAL_CHANNEL_CONTRACTS,
    ChannelContracts,
    caip2,
)
from farthing.wallet.signer import LocalSigner

__all__ = [
    "DEPLOYMENT_FILE",
    "MINTER_INDEX",
    "DevDeployment",
    "chain_state_dir",
    "load_dev_deployment",
    "read_deployment",
    "write_deployment",
]

DEPLOYMENT_FILE = "deployment.json"
DEPLOYMENT_SCHEMA = 1
# The dev account that deploys, owns and mints; recorded as "anvil:0".
MINTER_INDEX = 0


def chain_state_dir(data_dir: Path) -> Path:
    """Where ``farthing chain dev`` keeps its state under a Farthing data directory."""
    return Path(data_dir) / "chain"


@dataclass(frozen=True, slots=True)
class DevDeployment:
    """Where the dev chain's contracts are, as saved in ``deployment.json``.

    ``minter`` names the key that may mint, as ``anvil:<index>`` of anvil's
    public dev accounts; it is a reference, never the key itself.
    """

    rpc_url: str
    chain_id: int
    token: Asset
    batch_settler: str
    minter: str = f"anvil:{MINTER_INDEX}"
    channels: ChannelContracts = CANONICAL_CHANNEL_CONTRACTS

    @property
    def network(self) -> str:
        return caip2(self.chain_id)

    def minter_signer(self) -> LocalSigner:
        """The minter's signer: only ever an anvil public dev key, on the local chain."""
        if self.chain_id != ANVIL_CHAIN_ID or not self.minter.startswith("anvil:"):
            raise DeploymentError(f"no local minter key for {self.minter!r} on {self.network}")
        index = int(self.minter.split(":", 1)[1])
        return anvil_dev_accounts(index + 1)[index].signer()

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": DEPLOYMENT_SCHEMA,
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "network": self.network,
            "token": {
                "address": self.token.address,
                "name": self.token.name,
                "symbol": self.token.symbol,
                "version": self.token.version,
                "decimals": self.token.decimals,
            },
            "batch_settler": self.batch_settler,
            "minter": self.minter,
            "channels": {
                "settlement": self.channels.settlement,
                "erc3009_collector": self.channels.erc3009_collector,
                "permit2_collector": self.channels.permit2_collector,
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DevDeployment:
        if data.get("schema") != DEPLOYMENT_SCHEMA:
            raise DeploymentError(f"unsupported deployment record schema {data.get('schema')!r}")
        chain_id = int(data["chain_id"])
        token = data["token"]
        asset = Asset(
            network=caip2(chain_id),
            address=checksum(token["address"]),
            decimals=int(token["decimals"]),
            name=str(token["name"]),
            version=str(token["version"]),
            symbol=str(token["symbol"]),
        )
        # Records written before channels existed have no "channels": the
        # canonical addresses, which ensure_deployment fills in.
        channels = data.get("channels")
        return cls(
            str(data["rpc_url"]),
            chain_id,
            asset,
            checksum(data["batch_settler"]),
            str(data["minter"]),
            CANONICAL_CHANNEL_CONTRACTS
            if channels is None
            else ChannelContracts(
                checksum(channels["settlement"]),
                checksum(channels["erc3009_collector"]),
                checksum(channels["permit2_collector"]),
            ),
        )


def read_deployment(path: Path) -> DevDeployment | None:
    """The record at ``path``, or None if there is none; a damaged one raises."""
    if not path.exists():
        return None
    try:
        return DevDeployment.from_json(json.loads(path.read_text("utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(f"cannot read the deployment record {path}: {exc}") from None


def write_deployment(path: Path, deployment: DevDeployment) -> None:
    """Write the record atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(deployment.to_json(), indent=2) + "\n", "utf-8")
    tmp.replace(path)


def load_dev_deployment(
    data_dir: Path | str, *, state_dir: Path | str | None = None
) -> DevDeployment:
    """The local dev chain's deployment, as ``farthing chain dev`` last saved it.

    Looks in ``state_dir`` if given, else in ``<data_dir>/chain``. Raises
    ``DeploymentError`` (telling the user to start the dev chain) if there is none.
    """
    folder = Path(state_dir) if state_dir is not None else chain_state_dir(Path(data_dir))
    record = read_deployment(folder / DEPLOYMENT_FILE)
    if record is None:
        raise DeploymentError(
            f"no local dev chain deployment in {folder}: start one with `farthing chain dev`"
        )
    return record
