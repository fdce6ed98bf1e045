"""``SmartAccountSigner`` pays from the account its owner controls: CREATE2 addresses, wrapping, post-signing checks.

On the memory chain and anvil with the factory placed at its dev-chain
address: the address we compute is where the factory deploys; an undeployed
account's signature is ERC-6492-wrapped and unwraps to the owner's, a
deployed one's is the owner's plain signature; ``sign_authorization`` checks
the owner's signature and refuses a signer whose owner returns junk; the
repr names addresses only.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from farthing.wallet.chain import Chain
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_authorization
from farthing.wallet.erc6492 import Wrapped, unwrap
from farthing.wallet.errors import SigningError
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    DEV_ACCOUNT_FACTORY,
    SmartAccountSigner,
    account_address,
    deploy_account,
    place_account_factory,
)


def test_the_factory_deploys_where_we_compute_and_signatures_follow(chain: Chain) -> None:
    factory = place_account_factory(chain)
    assert factory == DEV_ACCOUNT_FACTORY and place_account_factory(chain) == factory
    owner, salt = LocalSigner.generate(), os.urandom(32)
    account = SmartAccountSigner.on_chain(chain, owner, factory=factory, salt=salt)
    assert account.address == account_address(factory, owner.address, salt)
    assert not account.deployed
    domain = TokenDomain("USD Coin", "2", chain.chain_id, owner.address)
    authorization = build_authorization(from_address=account.address, to=owner.address, value=1)
    wrapped = sign_authorization(account, authorization, domain).signature
    parts = unwrap(wrapped)
    assert isinstance(parts, Wrapped) and parts.factory == factory
    assert account.owner_signature(wrapped) == parts.signature and len(parts.signature) == 65

    deployed_at = deploy_account(
        chain, factory, owner.address, salt, sender=chain.dev_accounts()[0].signer()
    )
    assert deployed_at == account.address and chain.code_at(account.address)
    again = SmartAccountSigner.on_chain(chain, owner, factory=factory, salt=salt)
    assert again.deployed
    plain = sign_authorization(again, authorization, domain).signature
    assert plain == parts.signature  # the owner's, deterministic (RFC 6979)
    assert repr(again) == f"SmartAccountSigner(address={again.address!r}, owner={owner.address!r})"


class _JunkOwner:
    address = LocalSigner.generate().address

    def sign_typed_data(self, *args: Any) -> bytes:
        return os.urandom(65)


def test_a_signature_not_the_owners_never_leaves() -> None:
    account = SmartAccountSigner(
        _JunkOwner(), factory=DEV_ACCOUNT_FACTORY, salt=os.urandom(32), deployed=True
    )
    domain = TokenDomain("USD Coin", "2", 1, DEV_ACCOUNT_FACTORY)
    authorization = build_authorization(from_address=account.address, to=account.owner, value=1)
    with pytest.raises(SigningError):
        sign_authorization(account, authorization, domain)
