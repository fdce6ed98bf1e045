"""The networks Farthing knows by name, with their stablecoin.

``local`` is the anvil dev chain started by ``farthing chain dev``: its token is
deployed at start-up, so its address comes from the dev chain's deployment
record rather than from this table. The in-process ``memory`` chain is a
backend, not a network: its chain id is read from the chain itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from farthing.wallet.errors import NetworkError
from farthing.wallet.money import Asset

__all__ = [
    "CANONICAL_CHANNEL_CONTRACTS",
    "NETWORKS",
    "ChannelContracts",
    "Network",
    "caip2",
    "get_network",
    "network_for_chain_id",
]


@dataclass(frozen=True, slots=True)
class ChannelContracts:
    """Where the x402 ``batch-settlement`` contracts sit on a network.

    The official deployments use CREATE2, so one set of addresses serves every
    chain; the local chains get our own contracts placed at the same addresses
    (``farthing.wallet.channels.place_channel_contracts``).
    """

    settlement: str  # x402BatchSettlement: the channel escrow
    erc3009_collector: str  # pulls deposits with EIP-3009 receiveWithAuthorization
    permit2_collector: str  # pulls deposits through Permit2 (not placed on local chains yet)


# The canonical addresses, from the x402 batch-settlement EVM spec.
CANONICAL_CHANNEL_CONTRACTS = ChannelContracts(
    settlement="0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003",
    erc3009_collector="0x4020806089470a89826cB9fB1f4059150b550004",
    permit2_collector="0x4020425FAf3B746C082C2f942b4E5159887B0005",
)


@dataclass(frozen=True, slots=True)
class Network:
    """A named chain: its CAIP-2 id, a default RPC URL and its stablecoin."""

    name: str
    chain_id: int
    default_rpc_url: str
    usdc: Asset | None  # None when the token is deployed at run time (local)
    is_local: bool  # minting and printing dev keys are allowed only here
    channels: ChannelContracts = CANONICAL_CHANNEL_CONTRACTS  # batch-settlement contracts

    @property
    def caip2(self) -> str:
        return caip2(self.chain_id)


def caip2(chain_id: int) -> str:
    """The CAIP-2 identifier of an EVM chain, e.g. ``eip155:8453``."""
    return f"eip155:{chain_id}"


ANVIL_CHAIN_ID = 31337

NETWORKS: dict[str, Network] = {
    "local": Network(
        name="local",
        chain_id=ANVIL_CHAIN_ID,
        default_rpc_url="http://127.0.0.1:8545",
        usdc=None,
        is_local=True,
    ),
    "base-sepolia": Network(
        name="base-sepolia",
        chain_id=84532,
        default_rpc_url="https://sepolia.base.org",
        usdc=Asset(
            network="eip155:84532",
            address="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            decimals=6,
            name="USDC",
            version="2",
        ),
        is_local=False,
    ),
    "base": Network(
        name="base",
        chain_id=8453,
        default_rpc_url="https://mainnet.base.org",
        usdc=Asset(
            network="eip155:8453",
            address="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            decimals=6,
            name="USD Coin",
            version="2",
        ),
        is_local=False,
    ),
}


def get_network(name: str) -> Network:
    """Look a network up by name (``base``) or CAIP-2 id (``eip155:8453``)."""
    key = name.strip().lower()
    if key in NETWORKS:
        return NETWORKS[key]
    if key.startswith("eip155:"):
        found = next((n for n in NETWORKS.values() if n.caip2 == key), None)
        if found is not None:
            return found
    known = ", ".join(NETWORKS)
    raise NetworkError(f"unknown network {name!r} (known: {known})")


def network_for_chain_id(chain_id: int) -> Network | None:
    """The registered network with this chain id, if any."""
    return next((n for n in NETWORKS.values() if n.chain_id == chain_id), None)
