"""Both gas-sponsoring extensions let a payer with no Permit2 approval and no ETH pay ``upto``.

On the memory chain and anvil, a fresh payer (tokens only) signs the ceiling
and either an EIP-2612 permit for Permit2 (``eip2612GasSponsoring``: the
facilitator calls ``settleWithPermit``) or an ``approve(Permit2)``
transaction (``erc20ApprovalGasSponsoring``: the facilitator funds its gas,
broadcasts it, then settles). Each verifies and settles exactly the charge;
an extension for another payer, spender, amount or chain is refused and moves
nothing.
"""

from __future__ import annotations

from dataclasses import replace

from farthing.paywall.schemes.upto.client import (
    permit2_allowance,
    sign_eip2612_permit,
    sign_erc20_approval,
    token_nonce,
)
from farthing.paywall.schemes.upto.contract import PERMIT2_ADDRESS
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv


def _eip2612(env: UptoEnv):  # type: ignore[no-untyped-def]
    offer = env.offer()
    permit = sign_eip2612_permit(
        env.fresh,
        offer,
        nonce=token_nonce(env.chain, env.asset.address, env.fresh.address),
        deadline=env.chain.timestamp() + 300,
    )
    return env.pay(offer, signer=env.fresh, eip2612=permit)


def test_an_eip2612_permit_lets_a_payer_without_allowance_pay(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = _eip2612(env)
    assert env.chain.native_balance(env.fresh.address) == 0
    assert env.facilitator.verify(payment, env.offer()).valid
    result = env.facilitator.settle(payment, env.offer().charging(2_500))
    assert result.success and result.amount == 2_500
    assert env.balance(env.payee) == 2_500 and env.balance(env.fresh) == FUNDS - 2_500
    # The permit approved exactly the ceiling; the rest of it stays approved, unspent.
    assert permit2_allowance(env.chain, env.asset.address, env.fresh.address) == CEILING - 2_500


def test_an_eip2612_permit_that_is_not_the_payers_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = _eip2612(env)
    assert payment.eip2612 is not None
    for permit, reason in [
        (replace(payment.eip2612, from_address=env.outsider.address), "eip2612_from_mismatch"),
        (replace(payment.eip2612, spender=env.outsider.address), "eip2612_spender_not_permit2"),
        (replace(payment.eip2612, amount=CEILING + 1), "eip2612_amount_mismatch"),
        (replace(payment.eip2612, nonce=7), "eip2612_invalid_signature"),
    ]:
        bad = replace(payment, eip2612=permit)
        assert env.facilitator.verify(bad, env.offer()).reason == reason
        assert env.facilitator.settle(bad, env.offer().charging(1)).reason == reason
    assert env.balance(env.fresh) == FUNDS


def test_a_signed_approval_lets_a_payer_without_eth_pay(upto_env: UptoEnv) -> None:
    env = upto_env
    offer = env.offer()
    approval = sign_erc20_approval(env.chain, env.fresh, offer)
    payment = env.pay(offer, signer=env.fresh, erc20_approval=approval)
    assert env.facilitator.verify(payment, offer).valid
    result = env.facilitator.settle(payment, offer.charging(4_000))
    assert result.success and result.amount == 4_000
    assert env.balance(env.payee) == 4_000 and env.balance(env.fresh) == FUNDS - 4_000
    allowance = permit2_allowance(env.chain, env.asset.address, env.fresh.address)
    assert allowance > CEILING  # approve(Permit2, max) was broadcast


def test_a_signed_approval_for_another_spender_or_payer_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    offer = env.offer()
    approval = sign_erc20_approval(env.chain, env.fresh, offer)
    payment = env.pay(offer, signer=env.fresh, erc20_approval=approval)
    # The outsider's own signed approve, passed off as the payer's.
    theirs = sign_erc20_approval(env.chain, env.outsider, offer)
    cases = [
        (replace(approval, signed_transaction=theirs.signed_transaction), "erc20_approval_tx_signer_mismatch"),
        (replace(approval, spender=env.outsider.address), "erc20_approval_spender_not_permit2"),
        (replace(approval, signed_transaction=b"\x02garbage"), "erc20_approval_tx_parse_failed"),
    ]  # fmt: skip
    for bad_approval, reason in cases:
        bad = replace(payment, erc20_approval=bad_approval)
        assert env.facilitator.verify(bad, offer).reason == reason
        assert env.facilitator.settle(bad, offer.charging(1)).reason == reason
    assert env.balance(env.fresh) == FUNDS
    assert env.chain.native_balance(env.fresh.address) == 0  # no gas was funded for a refusal
    assert PERMIT2_ADDRESS  # the canonical spender the refusals compare with
