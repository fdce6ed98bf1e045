"""Resolve what a wallet command talks to: a chain and its stablecoin.

``--network local`` means the anvil dev chain started by ``farthing chain dev``:
its RPC URL and token address come from the deployment record that command
writes under the data directory. ``base`` and ``base-sepolia`` use the
registry's USDC. ``--rpc-url`` points anywhere; the chain id it reports must
match the network, so a misconfigured URL cannot send real money to the wrong
chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from farthing.wallet.chain import Chain, DevAccount, anvil_dev_accounts, open_chain
from farthing.wallet.deployment import load_dev_deployment
from farthing.wallet.errors import ChainError, NetworkError
from farthing.wallet.money import Asset
from farthing.wallet.networks import Network, get_network, network_for_chain_id
from farthing.wallet.settings import WalletSettings
from farthing.wallet.token import read_asset

__all__ = ["ChainTarget", "resolve_target"]


@dataclass(frozen=True, slots=True)
class ChainTarget:
    """An open chain, the network it was checked to be, and the token to use."""

    chain: Chain
    network: Network | None  # None for an unregistered chain reached by URL
    asset: Asset
    minter: DevAccount | None  # set on local dev chains only: the faucet's key

    @property
    def is_local(self) -> bool:
        return self.minter is not None


def resolve_target(
    settings: WalletSettings,
    *,
    network: str | None = None,
    rpc_url: str | None = None,
    token: str | None = None,
) -> ChainTarget:
    """Open the chain a command should use and find its stablecoin."""
    name = network if network is not None else (None if rpc_url else settings.network)
    rpc_url = rpc_url or settings.rpc_url
    if name is not None:
        known = get_network(name)
        if known.is_local:
            return _local_target(settings, known, rpc_url=rpc_url, token=token)
        chain = open_chain(rpc_url or known.default_rpc_url, timeout_s=settings.rpc_timeout_s)
        _check_chain_id(chain, known)
        asset = read_asset(chain, token) if token else known.usdc
        if asset is None:  # every non-local network in the registry has USDC
            raise NetworkError(f"network {known.name} has no stablecoin configured; pass --token")
        return ChainTarget(chain=chain, network=known, asset=asset, minter=None)

    if rpc_url is None:  # unreachable: name is None only when rpc_url is set
        raise NetworkError("pass --network or --rpc-url")
    chain = open_chain(rpc_url, timeout_s=settings.rpc_timeout_s)
    inferred = network_for_chain_id(chain.chain_id)
    if inferred is not None and inferred.is_local:
        return _local_target(settings, inferred, rpc_url=rpc_url, token=token, chain=chain)
    if token:
        return ChainTarget(
            chain=chain, network=inferred, asset=read_asset(chain, token), minter=None
        )
    if inferred is None or inferred.usdc is None:
        raise NetworkError(
            f"chain {chain.chain_id} at {rpc_url} is not a known network; pass --token ADDRESS"
        )
    return ChainTarget(chain=chain, network=inferred, asset=inferred.usdc, minter=None)


def _check_chain_id(chain: Chain, network: Network) -> None:
    if chain.chain_id != network.chain_id:
        raise ChainError(
            f"the RPC at {chain.rpc_url} serves chain {chain.chain_id}, "
            f"not {network.name} ({network.chain_id})"
        )


def _local_target(
    settings: WalletSettings,
    network: Network,
    *,
    rpc_url: str | None,
    token: str | None,
    chain: Chain | None = None,
) -> ChainTarget:
    if token:
        # An explicit token needs no deployment record: any anvil will do.
        url = rpc_url or network.default_rpc_url
        chain = chain or open_chain(url, timeout_s=settings.rpc_timeout_s)
        _check_chain_id(chain, network)
        return ChainTarget(chain, network, read_asset(chain, token), anvil_dev_accounts(1)[0])
    deployment = load_dev_deployment(settings.data_dir)
    chain = chain or open_chain(rpc_url or deployment.rpc_url, timeout_s=settings.rpc_timeout_s)
    _check_chain_id(chain, network)
    minter = deployment.minter_signer()
    return ChainTarget(
        chain=chain,
        network=network,
        asset=read_asset(chain, deployment.token.address),
        minter=DevAccount(minter.address, minter.private_key),
    )
