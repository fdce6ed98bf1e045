"""A payer cannot take the gas money the ``upto`` facilitator funds for a sponsored ``approve()``.

``erc20ApprovalGasSponsoring`` has the facilitator fund a payer without ETH
(at most 0.01 ETH) and then broadcast the payer's signed ``approve(Permit2)``.
Found by attack on ``farthing facilitator serve``: a signed transaction the
node refuses *after* the funding (it sends ETH along, names a priority fee
above its max fee, a gas limit below the intrinsic gas, or a max fee below
the base fee) left the payer the funding with no token moved, and a fresh
address with the same tokens could do it again, 0.01 ETH a time; an access
list (its intrinsic cost not counted) is refused too. Each such transaction is now refused at verify and at settle, before
anything is funded or sent. Real pieces: our facilitator, token, Permit2 and
proxy on the memory chain and on anvil (``upto_env``); the attacker's
transactions signed with eth-account as any wallet would.
"""

from __future__ import annotations

from typing import Any

from farthing.paywall.schemes.upto.client import _call
from farthing.paywall.schemes.upto.contract import PERMIT2_ADDRESS
from farthing.paywall.schemes.upto.wire import Erc20Approval
from farthing.wallet.address import checksum
from farthing.wallet.signer import LocalSigner
from tests.paywall.upto.conftest import FUNDS, UptoEnv, upto_env

__all__ = ["upto_env"]


def _approval(env: UptoEnv, signer: LocalSigner, **changes: Any) -> Erc20Approval:
    """The payer's own signed ``approve(Permit2, ceiling)``, with some fields changed."""
    offer = env.offer()
    base_fee = int(env.chain.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    tip = 10**9
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": offer.chain_id,
        "nonce": int(env.chain.w3.eth.get_transaction_count(checksum(signer.address), "pending")),
        "to": offer.asset,
        "value": 0,
        "data": "0x" + _call(offer.asset, "approve", PERMIT2_ADDRESS, offer.amount).data.hex(),
        "gas": 70_000,
        "maxFeePerGas": 2 * base_fee + tip,
        "maxPriorityFeePerGas": tip,
    }
    tx.update(changes)
    return Erc20Approval(
        from_address=signer.address,
        asset=offer.asset,
        spender=PERMIT2_ADDRESS,
        amount=offer.amount,
        signed_transaction=bytes(signer.sign_transaction(tx)),
    )


def _fresh(env: UptoEnv) -> LocalSigner:
    payer = LocalSigner.generate()
    assert env.token.mint(payer.address, FUNDS, sender=env.owner).ok
    return payer


def test_an_approval_the_node_would_refuse_is_refused_before_any_funding(
    upto_env: UptoEnv,
) -> None:
    env = upto_env
    fee_cap = 10**16 // 70_000  # the most the facilitator funds: 0.01 ETH at 70,000 gas
    cases = [
        ({"value": 1, "maxFeePerGas": fee_cap}, "erc20_approval_tx_has_value"),
        (
            {"accessList": [{"address": env.asset.address, "storageKeys": []}]},
            "erc20_approval_tx_access_list",
        ),
        ({"maxPriorityFeePerGas": fee_cap + 1, "maxFeePerGas": fee_cap}, "erc20_approval_tx_fee_invalid"),
        ({"gas": 21_000, "maxFeePerGas": 10**16 // 21_000}, "erc20_approval_tx_gas_too_low"),
    ]  # fmt: skip
    relayer_nonce = env.chain.w3.eth.get_transaction_count(env.relayer.address)
    for changes, reason in cases:
        payer = _fresh(env)
        offer = env.offer()
        payment = env.pay(offer, signer=payer, erc20_approval=_approval(env, payer, **changes))
        verified = env.facilitator.verify(payment, offer)
        assert verified.reason == reason, (changes, verified)
        settled = env.facilitator.settle(payment, offer.charging(1_000))
        assert not settled.success and settled.reason == reason, (changes, settled)
        assert env.chain.native_balance(payer.address) == 0  # no gas was funded
        assert env.token.balance_of(payer.address) == FUNDS
    assert env.chain.w3.eth.get_transaction_count(env.relayer.address) == relayer_nonce


def test_an_approval_below_the_base_fee_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    payer = _fresh(env)
    offer = env.offer()
    base_fee = int(env.chain.w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    assert base_fee > 1  # both chains price gas with EIP-1559
    approval = _approval(env, payer, maxFeePerGas=base_fee - 1, maxPriorityFeePerGas=0)
    payment = env.pay(offer, signer=payer, erc20_approval=approval)
    assert env.facilitator.verify(payment, offer).reason == "erc20_approval_tx_fee_too_low"
    settled = env.facilitator.settle(payment, offer.charging(1_000))
    assert settled.reason == "erc20_approval_tx_fee_too_low"
    assert env.chain.native_balance(payer.address) == 0


def test_a_good_sponsored_approval_still_pays(upto_env: UptoEnv) -> None:
    env = upto_env
    payer = _fresh(env)
    offer = env.offer()
    payment = env.pay(offer, signer=payer, erc20_approval=_approval(env, payer))
    assert env.facilitator.verify(payment, offer).valid
    settled = env.facilitator.settle(payment, offer.charging(1_000))
    assert settled.success and settled.amount == 1_000
    assert env.token.balance_of(payer.address) == FUNDS - 1_000
