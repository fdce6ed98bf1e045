"""The shared signature check names the payer's kind and answers as the token would, on both chains.

On the memory chain and anvil with our account factory: a key's ECDSA
signature is ``eoa`` (and another key's is refused); a deployed SmartAccount's
owner signature is ``contract`` (another digest is refused); a counterfactual
account's ERC-6492 signature is ``counterfactual`` with the deployment to
run, while the account still has no code afterwards (the check kept
nothing); the same wrapper with a factory call for another owner is refused.
``delegate_of`` reads an EIP-7702 delegation and nothing else. On a chain
without Multicall3 a counterfactual payment verifies but is never sent.
"""

from __future__ import annotations

import asyncio
import os

from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.paywall.schemes.signatures import Deployment, check_signature, delegate_of
from farthing.paywall.wire import PaymentPayload, PaymentRequirements
from farthing.wallet.chain import Chain, MemoryChain
from farthing.wallet.eip712 import keccak256
from farthing.wallet.eip3009 import build_authorization, sign_authorization
from farthing.wallet.erc6492 import wrap
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    account_address,
    create_account_calldata,
    deploy_account,
    deploy_account_factory,
)
from farthing.wallet.token import Stablecoin, deploy_stablecoin


def test_each_kind_of_payer(chain: Chain) -> None:
    funder = chain.dev_accounts()[0].signer()
    factory = deploy_account_factory(chain, sender=funder)
    owner, salt = LocalSigner.generate(), os.urandom(32)
    digest = keccak256(os.urandom(32))
    signature = owner.unsafe_sign_hash(digest)

    key = check_signature(chain, owner.address, digest, signature)
    assert (key.valid, key.kind) == (True, "eoa")
    stranger = check_signature(chain, LocalSigner.generate().address, digest, signature)
    assert (stranger.valid, stranger.reason) == (False, "invalid_signature")

    account = account_address(factory, owner.address, salt)
    calldata = create_account_calldata(owner.address, salt)
    unborn = check_signature(chain, account, digest, wrap(factory, calldata, signature))
    assert (unborn.valid, unborn.kind) == (True, "counterfactual")
    assert unborn.deployment == Deployment(factory, calldata) and unborn.signature == signature
    assert not chain.code_at(account), "the simulation kept nothing"
    other = create_account_calldata(LocalSigner.generate().address, salt)
    wrong = check_signature(chain, account, digest, wrap(factory, other, signature))
    assert (wrong.valid, wrong.reason) == (False, "erc6492_not_deployed")

    deploy_account(chain, factory, owner.address, salt, sender=funder)
    deployed = check_signature(chain, account, digest, signature)
    assert (deployed.valid, deployed.kind, deployed.deployment) == (True, "contract", None)
    other_digest = check_signature(chain, account, keccak256(b"another"), signature)
    assert (other_digest.valid, other_digest.reason) == (False, "erc1271_refused")


def test_delegate_of_reads_only_a_delegation() -> None:
    delegate = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    code = b"\xef\x01\x00" + bytes.fromhex(delegate[2:])
    assert delegate_of(code) == delegate
    assert delegate_of(code + b"\x00") is None
    assert delegate_of(b"\xef\x01\x01" + code[3:]) is None
    assert delegate_of(b"") is None


def test_without_multicall3_a_counterfactual_payment_is_not_sent() -> None:
    """A chain with no Multicall3 has no neutral caller for the factory: nothing is sent."""
    chain = MemoryChain(accounts=4)
    try:
        owner, relayer = (a.signer() for a in chain.dev_accounts()[:2])
        asset = deploy_stablecoin(chain, sender=owner)
        token = Stablecoin(chain, asset)
        assert token.configure_minter(owner.address, sender=owner).ok
        assert not chain.code_at(MULTICALL3_ADDRESS)
        factory = deploy_account_factory(chain, sender=owner)
        account = SmartAccountSigner(
            LocalSigner.generate(), factory=factory, salt=os.urandom(32), deployed=False
        )
        assert token.mint(account.address, 50_000, sender=owner).ok
        merchant = LocalSigner.generate().address
        requirements = PaymentRequirements(
            network=chain.network, asset=asset.address, amount=10_000, pay_to=merchant,
            max_timeout_seconds=300, token_name=asset.name, token_version=asset.version,
        )  # fmt: skip
        authorization = build_authorization(
            from_address=account.address, to=merchant, value=10_000, now=chain.timestamp()
        )
        signed = sign_authorization(account, authorization, requirements.domain())
        payload = PaymentPayload(
            accepted=requirements, authorization=authorization, signature=signed.signature
        )
        facilitator = LocalFacilitator(chain, relayer, clock=lambda: float(chain.timestamp()))
        assert asyncio.run(facilitator.verify(payload, requirements)).valid
        nonce = chain.w3.eth.get_transaction_count(relayer.address)
        assert not asyncio.run(facilitator.settle(payload, requirements)).success
        assert chain.w3.eth.get_transaction_count(relayer.address) == nonce
        assert not chain.code_at(account.address)
        assert token.balance_of(account.address) == 50_000
    finally:
        chain.close()
