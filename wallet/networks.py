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
    "AUTH_CAPTURE_CONTRACTS_V1_0",
    "CANONICAL_AUTH_CAPTURE_CONTRACTS",
    "CANONICAL_CHANNEL_CONTRACTS",
    "CANONICAL_UPTO_CONTRACTS",
    "NETWORKS",
    "AuthCaptureContracts",
    "ChannelContracts",
    "Network",
    "UptoContracts",
    "caip2",
    "get_network",
    "network_for_chain_id",
]


@dataclass(frozen=True, slots=True)
class ChannelContracts:
    """Where the x402 ``batch-settlement`` contracts sit on a network.

    The official deployments use CREATE2, so one set of addresses serves every
    chain; the local chains get our own contracts placed at the same addresses
    (``farthing.paywall.schemes.batch_settlement.vouchers.place_channel_contracts``).
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
class AuthCaptureContracts:
    """Where the commerce-payments contracts of the x402 ``auth-capture`` scheme sit.

    One CREATE2 set serves every chain. The local chains get our own contracts
    (the v1.1 ABI) placed at the v1.1 addresses
    (``farthing.paywall.schemes.auth_capture.contract.place_auth_capture_contracts``).
    """

    escrow: str  # AuthCaptureEscrow: holds, captures, voids, refunds, reclaims
    erc3009_collector: str  # ERC3009PaymentCollector: collects with receiveWithAuthorization
    permit2_collector: str  # Permit2PaymentCollector (not placed on local chains)
    operator_refund_collector: str  # OperatorRefundCollector: refund liquidity from the operator


# The canonical addresses, from the x402 auth-capture EVM spec ("Commerce-payments
# deployments"). v1.1 is the default: `capture` and `charge` take a `feeAmount`.
CANONICAL_AUTH_CAPTURE_CONTRACTS = AuthCaptureContracts(
    escrow="0x13AC3b34322D12FE27D5e192D0c2b2266d4F29CB",
    erc3009_collector="0xEA902B37036bcb4944577ec2101ABdEDF56EbD28",
    permit2_collector="0x1aacb38b16a1a8709e80746825E53A0C9Cae9b70",
    operator_refund_collector="0x6a1ADdEEb4bD9c5811a613e20c172b6CE61A4aaB",
)


@dataclass(frozen=True, slots=True)
class UptoContracts:
    """x402 ``upto``'s contracts: Uniswap's Permit2 and the x402UptoPermit2Proxy.

    Both sit at one address on every chain (Permit2's canonical deployment,
    the proxy's CREATE2 one). The local chains get our own contracts placed
    at these addresses
    (``farthing.paywall.schemes.upto.contract.place_upto_contracts``).
    """

    permit2: str  # moves a payer's tokens on its signed permit (witness transfers)
    proxy: str  # x402UptoPermit2Proxy: settles up to the signed ceiling, for the named facilitator


# The canonical addresses (the x402 upto EVM spec; the x402 SDK's constants).
CANONICAL_UPTO_CONTRACTS = UptoContracts(
    permit2="0x000000000022D473030F116dDEE9F6B43aC78BA3",
    proxy="0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002",
)
# The older set, whose `capture` and `charge` take a `uint16 feeBps`. Named for
# recognising it on the wire only: Farthing's binding speaks the v1.1 ABI.
AUTH_CAPTURE_CONTRACTS_V1_0 = AuthCaptureContracts(
    escrow="0xBdEA0D1bcC5966192B070Fdf62aB4EF5b4420cff",
    erc3009_collector="0x0E3dF9510de65469C4518D7843919c0b8C7A7757",
    permit2_collector="0x992476B9Ee81d52a5BdA0622C333938D0Af0aB26",
    operator_refund_collector="0x934907bffd0901b6A21e398B9C53A4A38F02fa5d",
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
    auth_capture: AuthCaptureContracts = CANONICAL_AUTH_CAPTURE_CONTRACTS  # auth-capture escrow
    upto: UptoContracts = CANONICAL_UPTO_CONTRACTS  # upto: Permit2 and its proxy

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
