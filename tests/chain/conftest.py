"""Fixtures for the chain tests: a fresh token per test on each backend.

The backends themselves (``memory_chain``, ``anvil_chain`` and the ``chain``
fixture parametrized over both) live in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from farthing.wallet.chain import Chain
from farthing.wallet.eip3009 import (
    TRANSFER_WITH_AUTHORIZATION,
    Authorization,
    SignedAuthorization,
    TokenDomain,
    build_authorization,
    typed_data,
)
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin

PAYER_FUNDS = 100_000_000  # 100 USDC in atomic units


@dataclass(frozen=True)
class TokenEnv:
    """A freshly deployed token with named actors (anvil's public dev keys)."""

    chain: Chain
    asset: Asset
    token: Stablecoin
    domain: TokenDomain
    owner: LocalSigner  # deployer, owner, master minter and minter
    payer: LocalSigner  # holds PAYER_FUNDS
    payee: LocalSigner
    relayer: LocalSigner  # submits authorizations, like a facilitator
    outsider: LocalSigner
    payer_funds: int = PAYER_FUNDS

    def authorization(self, value: int = 1_000_000, **overrides: Any) -> Authorization:
        """An authorization from payer to payee, valid now by the chain's clock."""
        fields: dict[str, Any] = {
            "from_address": self.payer.address,
            "to": self.payee.address,
            "value": value,
            "now": self.chain.timestamp(),
        }
        fields.update(overrides)
        return build_authorization(**fields)

    def sign(
        self,
        authorization: Authorization,
        signer: LocalSigner | None = None,
        primary_type: str = TRANSFER_WITH_AUTHORIZATION,
    ) -> SignedAuthorization:
        """Sign with ``signer`` (default: the payer), skipping eip3009's own signer check."""
        key = signer or self.payer
        signature = key.sign_typed_data(*typed_data(authorization, self.domain, primary_type))  # type: ignore[arg-type]
        return SignedAuthorization(authorization, signature, self.domain, primary_type)  # type: ignore[arg-type]


def deploy_env(chain: Chain) -> TokenEnv:
    accounts = [a.signer() for a in chain.dev_accounts()[:5]]
    owner, payer, payee, relayer, outsider = accounts
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    return TokenEnv(
        chain, asset, token, TokenDomain.for_asset(asset), owner, payer, payee, relayer, outsider
    )


@pytest.fixture
def make_env() -> Callable[[Chain], TokenEnv]:
    """Deploy another token (with its own funded payer) on a given chain."""
    return deploy_env


@pytest.fixture
def env(chain: Chain) -> TokenEnv:
    """A new token on the backend under test, with the payer funded."""
    return deploy_env(chain)
