"""Smart-account payers hold and are captured through ``auth-capture``; their signature is verified, not simulated.

On the memory chain and anvil with our escrow contracts: a deployed
SmartAccount and a counterfactual one (its ERC-6492 signature; the
collector deploys it through Multicall3 when the hold is authorized) sign the
client's collect payload with :class:`SmartAccountSigner`, our facilitator
verifies it (ERC-1271 or the ERC-6492 simulation), authorizes and captures;
balances move exactly. A collect payload whose signature the wallet refuses
is refused with the signature code by the wallet check, before any simulation
or transaction.
"""

from __future__ import annotations

import os
from dataclasses import replace

from farthing.paywall.schemes.auth_capture.consent import capture_payload, collect_payload
from farthing.paywall.schemes.auth_capture.contract import PaymentState
from farthing.paywall.schemes.auth_capture.payment import fee_amount
from farthing.paywall.schemes.auth_capture.types import ERR_SIGNATURE
from farthing.paywall.schemes.auth_capture.wire import AuthCapturePayment
from farthing.wallet.chain import Chain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.smart_account import (
    SmartAccountSigner,
    deploy_account,
    deploy_account_factory,
)
from tests.paywall.test_authcapture_facilitator import FEE_BPS, PRICE, Setup, _setup

FUNDS = 3_000_000


def _account(s: Setup, *, deployed: bool) -> SmartAccountSigner:
    funder = s.chain.dev_accounts()[0].signer()
    factory = deploy_account_factory(s.chain, sender=funder)
    owner, salt = LocalSigner.generate(), os.urandom(32)
    if deployed:
        deploy_account(s.chain, factory, owner.address, salt, sender=funder)
    account = SmartAccountSigner.on_chain(s.chain, owner, factory=factory, salt=salt)
    assert s.token.mint(account.address, FUNDS, sender=funder).ok
    return account


def _hold_and_capture(s: Setup, account: SmartAccountSigner) -> None:
    req = s.requirements()
    payload, info = collect_payload(account, req, now=s.chain.timestamp())
    payment = AuthCapturePayment(req, payload)
    verdict = s.facilitator.verify(payment, req)
    assert verdict.valid, verdict
    held = s.facilitator.authorize(payment, req)
    assert held.success, held
    assert s.chain.code_at(account.address), "the hold deployed the account if it had to"
    assert s.token.balance_of(account.address) == FUNDS - PRICE
    nonce = payload.salt if payload.salt_nonce is None else payload.salt_nonce
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
    )
    assert s.facilitator.capture(op, req).success
    assert s.token.balance_of(s.receiver) == PRICE - fee_amount(PRICE, FEE_BPS)


def test_a_deployed_smart_account_is_held_and_captured(chain: Chain) -> None:
    s = _setup(chain)
    _hold_and_capture(s, _account(s, deployed=True))


def test_a_counterfactual_smart_account_is_deployed_by_its_hold(chain: Chain) -> None:
    s = _setup(chain)
    account = _account(s, deployed=False)
    assert not chain.code_at(account.address)
    _hold_and_capture(s, account)


def test_a_signature_the_wallet_refuses_is_refused_before_simulating(chain: Chain) -> None:
    s = _setup(chain)
    account = _account(s, deployed=True)
    req = s.requirements()
    payload, _ = collect_payload(account, req, now=chain.timestamp())
    forged = replace(payload, signature=os.urandom(65))
    verdict = s.facilitator.verify(AuthCapturePayment(req, forged), req)
    assert not verdict.valid and verdict.reason == ERR_SIGNATURE
    assert "erc1271_refused" in (verdict.message or "")
    assert s.token.balance_of(account.address) == FUNDS
