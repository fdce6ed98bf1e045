"""farthing.wallet: money, networks, keys, signing, and the chain client.

The names below are the public surface; the modules hold more detail:
``money`` (amounts and assets), ``networks`` (the registry), ``keystore``
(encrypted keys), ``signer`` (the Signer seam), ``eip3009`` (payment
authorizations), ``eip712`` (the fast verify path), ``chain`` (memory and RPC
backends), ``token`` (stablecoin and batch settler bindings), ``deployment``
(the dev chain's record), ``account`` (the Wallet facade).
"""

from farthing.wallet.account import Wallet
from farthing.wallet.address import checksum
from farthing.wallet.chain import Chain, MemoryChain, RpcChain, TxResult, open_chain
from farthing.wallet.eip712 import VerifyOutcome, recover_fast, verify_authorization_signature
from farthing.wallet.eip3009 import (
    Authorization,
    SignedAuthorization,
    TokenDomain,
    build_authorization,
    recover_authorization_signer,
    sign_authorization,
)
from farthing.wallet.errors import WalletError
from farthing.wallet.money import Asset, Money, format_amount, parse_amount
from farthing.wallet.networks import NETWORKS, Network, get_network
from farthing.wallet.settings import WalletSettings
from farthing.wallet.signer import LocalSigner, Signer, TxSigner
from farthing.wallet.token import BatchSettler, Stablecoin, deploy_batch_settler, deploy_stablecoin

__all__ = [
    "NETWORKS",
    "Asset",
    "Authorization",
    "BatchSettler",
    "Chain",
    "LocalSigner",
    "MemoryChain",
    "Money",
    "Network",
    "RpcChain",
    "SignedAuthorization",
    "Signer",
    "Stablecoin",
    "TokenDomain",
    "TxResult",
    "TxSigner",
    "VerifyOutcome",
    "Wallet",
    "WalletError",
    "WalletSettings",
    "build_authorization",
    "checksum",
    "deploy_batch_settler",
    "deploy_stablecoin",
    "format_amount",
    "get_network",
    "open_chain",
    "parse_amount",
    "recover_authorization_signer",
    "recover_fast",
    "sign_authorization",
    "verify_authorization_signature",
]
