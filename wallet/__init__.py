"""farthing.wallet: money, networks, keys, signing, and the chain client.

The names below are the public surface; the modules hold more detail:
``money`` (amounts and assets), ``networks`` (the registry), ``keystore``
(encrypted keys), ``signer`` (the Signer seam), ``eip3009`` (payment
authorizations), ``eip712`` (the fast verify path), ``chain`` (memory and RPC
backends), ``token`` (stablecoin and batch settler bindings), ``deployment``
(the dev chain's record), ``account`` (the Wallet facade).

The names are imported on first use (``farthing.lazy``): importing one
submodule does not load the whole package.
"""

from typing import TYPE_CHECKING

from farthing.lazy import lazy_exports

if TYPE_CHECKING:
    from farthing.wallet.account import Wallet as Wallet
    from farthing.wallet.address import checksum as checksum
    from farthing.wallet.chain import Chain as Chain
    from farthing.wallet.chain import MemoryChain as MemoryChain
    from farthing.wallet.chain import RpcChain as RpcChain
    from farthing.wallet.chain import TxResult as TxResult
    from farthing.wallet.chain import open_chain as open_chain
    from farthing.wallet.eip712 import VerifyOutcome as VerifyOutcome
    from farthing.wallet.eip712 import recover_fast as recover_fast
    from farthing.wallet.eip712 import (
        verify_authorization_signature as verify_authorization_signature,
    )
    from farthing.wallet.eip3009 import Authorization as Authorization
    from farthing.wallet.eip3009 import SignedAuthorization as SignedAuthorization
    from farthing.wallet.eip3009 import TokenDomain as TokenDomain
    from farthing.wallet.eip3009 import build_authorization as build_authorization
    from farthing.wallet.eip3009 import recover_authorization_signer as recover_authorization_signer
    from farthing.wallet.eip3009 import sign_authorization as sign_authorization
    from farthing.wallet.errors import WalletError as WalletError
    from farthing.wallet.money import Asset as Asset
    from farthing.wallet.money import Money as Money
    from farthing.wallet.money import format_amount as format_amount
    from farthing.wallet.money import parse_amount as parse_amount
    from farthing.wallet.networks import NETWORKS as NETWORKS
    from farthing.wallet.networks import Network as Network
    from farthing.wallet.networks import get_network as get_network
    from farthing.wallet.settings import WalletSettings as WalletSettings
    from farthing.wallet.signer import LocalSigner as LocalSigner
    from farthing.wallet.signer import Signer as Signer
    from farthing.wallet.signer import TxSigner as TxSigner
    from farthing.wallet.token import BatchSettler as BatchSettler
    from farthing.wallet.token import Stablecoin as Stablecoin
    from farthing.wallet.token import deploy_batch_settler as deploy_batch_settler
    from farthing.wallet.token import deploy_stablecoin as deploy_stablecoin

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
