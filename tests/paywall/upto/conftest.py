"""Fixtures for the ``upto`` tests: a fresh token, our Permit2 and proxy, a funded payer, a facilitator.

``upto_env`` runs on the memory chain and on anvil (the ``chain`` fixture of
``tests/conftest.py``). The payer has tokens and has approved Permit2; the
``fresh`` payer has tokens only (no approval, no ETH), for the
gas-sponsoring extensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from farthing.paywall.schemes.upto.client import approve_permit2, upto_payment
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.wallet.chain import Chain
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin

FUNDS = 100_000_000  # 100 USDC
CEILING = 5_000_000  # 5 USDC


@dataclass
class UptoEnv:
    chain: Chain
    asset: Asset
    token: Stablecoin
    owner: LocalSigner
    payer: LocalSigner
    payee: LocalSigner
    relayer: LocalSigner  # the facilitator's key
    outsider: LocalSigner
    fresh: LocalSigner  # tokens, no approval, no ETH
    facilitator: UptoFacilitator

    def offer(self, amount: int = CEILING, **changes: Any) -> UptoRequirements:
        fields: dict[str, Any] = {
            "network": self.chain.network,
            "asset": self.asset.address,
            "amount": amount,
            "pay_to": self.payee.address,
            "max_timeout_seconds": 300,
            "token_name": self.asset.name,
            "token_version": self.asset.version,
            "facilitator_address": self.relayer.address,
        }
        fields.update(changes)
        return UptoRequirements(**fields)

    def pay(
        self, offer: UptoRequirements | None = None, signer: LocalSigner | None = None, **kw: Any
    ) -> UptoPayment:
        return upto_payment(
            offer or self.offer(), signer or self.payer, now=self.chain.timestamp(), **kw
        )

    def balance(self, who: LocalSigner) -> int:
        return self.token.balance_of(who.address)


@pytest.fixture
def upto_env(chain: Chain) -> UptoEnv:
    place_upto_contracts(chain)
    owner, payer, payee, relayer, outsider = (a.signer() for a in chain.dev_accounts()[:5])
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    fresh = LocalSigner.generate()
    for who in (payer, fresh, outsider):
        assert token.mint(who.address, FUNDS, sender=owner).ok
    assert approve_permit2(chain, payer, asset.address).ok
    assert approve_permit2(chain, outsider, asset.address).ok
    return UptoEnv(
        chain, asset, token, owner, payer, payee, relayer, outsider, fresh,
        UptoFacilitator(chain, relayer),
    )  # fmt: skip
