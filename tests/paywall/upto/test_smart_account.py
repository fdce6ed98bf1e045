"""A smart-account payer pays ``upto``: its Permit2 ceiling is verified by ERC-1271, settled for the actual charge.

On the memory chain and anvil, with our Permit2 and proxy: a deployed
SmartAccount approves Permit2 (its owner calls ``execute``), signs the
ceiling with :class:`SmartAccountSigner`; our facilitator verifies it through
the shared signature check and settles a partial charge, which moves from the
account. The same ceiling signed by another key is refused; a counterfactual
account's ERC-6492 signature is the account's, but with no Permit2 approval
and no EIP-2612 permit it is refused as ``permit2_allowance_required``
(test_smart_account_counterfactual.py pays with a permit).
"""

from __future__ import annotations

import os
from dataclasses import replace

from farthing.paywall.schemes.calldata import encode_call
from farthing.paywall.schemes.upto import types as codes
from farthing.paywall.schemes.upto.client import upto_payment
from farthing.paywall.schemes.upto.contract import PERMIT2_ADDRESS
from farthing.paywall.schemes.upto.permit import UPTO_TYPES, permit2_domain
from farthing.wallet.chain import Call
from farthing.wallet.money import UINT256_MAX
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    deploy_account,
    deploy_account_factory,
)
from tests.paywall.upto.conftest import FUNDS, UptoEnv

APPROVE = "approve(address,uint256)"
EXECUTE = "execute(address,uint256,bytes)"


def _account(env: UptoEnv, *, deployed: bool) -> SmartAccountSigner:
    factory = deploy_account_factory(env.chain, sender=env.owner)
    owner, salt = LocalSigner.generate(), os.urandom(32)
    if deployed:
        deploy_account(env.chain, factory, owner.address, salt, sender=env.owner)
    account = SmartAccountSigner.on_chain(env.chain, owner, factory=factory, salt=salt)
    assert env.token.mint(account.address, FUNDS, sender=env.owner).ok
    return account


def _approve_permit2(env: UptoEnv, account: SmartAccountSigner) -> None:
    owner = account.owner_signer
    assert isinstance(owner, LocalSigner)
    assert env.chain.send(Call(owner.address, b"", 10**17), sender=env.owner).ok  # gas money
    approve = encode_call(APPROVE, ["address", "uint256"], [PERMIT2_ADDRESS, UINT256_MAX])
    call = encode_call(EXECUTE, ["address", "uint256", "bytes"], [env.asset.address, 0, approve])
    assert env.chain.send(Call(account.address, call), sender=owner).ok


def test_a_smart_account_pays_upto_the_actual_charge(upto_env: UptoEnv) -> None:
    env = upto_env
    account = _account(env, deployed=True)
    _approve_permit2(env, account)
    offer = env.offer()
    payment = upto_payment(offer, account, now=env.chain.timestamp())
    assert len(payment.signature) == 65  # the owner's, checked by the account (ERC-1271)
    verdict = env.facilitator.verify(payment, offer)
    assert verdict.valid, verdict
    settled = env.facilitator.settle(payment, offer.charging(2_345))
    assert settled.success and settled.amount == 2_345
    assert env.token.balance_of(account.address) == FUNDS - 2_345
    assert env.balance(env.payee) == 2_345


def test_another_keys_or_a_wrapped_signature_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    account = _account(env, deployed=True)
    _approve_permit2(env, account)
    offer = env.offer()
    payment = upto_payment(offer, account, now=env.chain.timestamp())
    stranger = SmartAccountSigner(
        LocalSigner.generate(), factory=account.factory, salt=account.salt, deployed=True
    )
    typed = (
        permit2_domain(env.chain.chain_id),
        {k: [dict(f) for f in v] for k, v in UPTO_TYPES.items()},
        "PermitWitnessTransferFrom",
        payment.authorization.message(),
    )
    wrong = replace(payment, signature=stranger.sign_typed_data(*typed))
    refused = env.facilitator.verify(wrong, offer)
    assert not refused.valid and refused.reason == codes.ERR_INVALID_SIGNATURE
    unborn = _account(env, deployed=False)
    wrapped = upto_payment(env.offer(), unborn, now=env.chain.timestamp())
    refused = env.facilitator.verify(wrapped, env.offer())
    assert not refused.valid and refused.reason == codes.ERR_ALLOWANCE_REQUIRED
    assert env.token.balance_of(account.address) == FUNDS
    assert env.balance(env.payee) == 0
