"""The Stablecoin's permit, minter role and ERC-20 paths, and the BatchSettler, on both backends.

Like the EIP-3009 tests, each test deploys a fresh token on the memory chain
and on anvil and checks outcome values, balances and events; the batch tests
settle a batch with a bad item in it and check the good items still land.
"""

from __future__ import annotations

from typing import Any

import pytest

from farthing.wallet.eip3009 import sign_authorization
from farthing.wallet.money import UINT256_MAX
from farthing.wallet.token import BatchSettler, deploy_batch_settler

PERMIT_TYPES = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}


def _sign_permit(
    env: Any, signer: Any, spender: str, value: int, deadline: int, nonce: int | None = None
) -> bytes:
    message = {
        "owner": env.payer.address,
        "spender": spender,
        "value": value,
        "nonce": env.token.nonces(env.payer.address) if nonce is None else nonce,
        "deadline": deadline,
    }
    signature: bytes = signer.sign_typed_data(
        env.domain.as_eip712(), PERMIT_TYPES, "Permit", message
    )
    return signature


# ---------------------------------------------------------------- permit


@pytest.mark.parametrize("form", ["vrs", "bytes"])
def test_permit_sets_allowance_and_bumps_the_nonce(env: Any, form: str) -> None:
    deadline = env.chain.timestamp() + 3600
    signature = _sign_permit(env, env.payer, env.relayer.address, 5_000_000, deadline)
    result = env.token.permit(
        env.payer.address,
        env.relayer.address,
        5_000_000,
        deadline,
        signature,
        sender=env.relayer,
        form=form,
    )
    assert result.ok
    assert env.token.allowance(env.payer.address, env.relayer.address) == 5_000_000
    assert env.token.nonces(env.payer.address) == 1
    replay = env.token.permit(
        env.payer.address,
        env.relayer.address,
        5_000_000,
        deadline,
        signature,
        sender=env.relayer,
        form=form,
    )
    assert (replay.reason, replay.revert_message) == (
        "invalid_signature",
        "EIP2612: invalid signature",
    )


def test_permit_refusals(env: Any) -> None:
    past = env.chain.timestamp() - 10
    expired = env.token.permit(
        env.payer.address,
        env.relayer.address,
        1,
        past,
        _sign_permit(env, env.payer, env.relayer.address, 1, past),
        sender=env.relayer,
    )
    assert (expired.reason, expired.revert_message) == (
        "permit_expired",
        "FiatTokenV2: permit is expired",
    )

    forever = UINT256_MAX
    forged = _sign_permit(env, env.outsider, env.relayer.address, 1, forever)
    wrong = env.token.permit(
        env.payer.address, env.relayer.address, 1, forever, forged, sender=env.relayer
    )
    assert (wrong.reason, wrong.revert_message) == (
        "invalid_signature",
        "EIP2612: invalid signature",
    )
    assert env.token.nonces(env.payer.address) == 0


# ---------------------------------------------------------------- minting


def test_only_minters_mint(env: Any) -> None:
    refused = env.token.mint(env.outsider.address, 1, sender=env.outsider)
    assert (refused.ok, refused.reason) == (False, "caller_not_minter")
    assert refused.revert_message == "FiatToken: caller is not a minter"

    not_master = env.token.configure_minter(env.outsider.address, 10, sender=env.outsider)
    assert not_master.reason == "caller_not_master_minter"
    assert not env.token.is_minter(env.outsider.address)


def test_a_minter_allowance_is_spent(env: Any) -> None:
    assert env.token.configure_minter(env.relayer.address, 3, sender=env.owner).ok
    assert env.token.is_minter(env.relayer.address)
    assert env.token.mint(env.payee.address, 2, sender=env.relayer).ok
    assert env.token.minter_allowance(env.relayer.address) == 1
    over = env.token.mint(env.payee.address, 2, sender=env.relayer)
    assert over.reason == "mint_exceeds_minter_allowance"
    assert env.token.mint(env.payee.address, 0, sender=env.owner).reason == "mint_amount_zero"
    # An unlimited allowance (the dev faucet's) never runs down.
    assert env.token.minter_allowance(env.owner.address) == UINT256_MAX


# ---------------------------------------------------------------- ERC-20


def test_plain_transfers_and_their_refusals(env: Any) -> None:
    assert env.token.transfer(env.payee.address, 7, sender=env.payer).ok
    assert env.token.balance_of(env.payee.address) == 7
    zero = env.token.transfer("0x" + "00" * 20, 1, sender=env.payer)
    assert (zero.reason, zero.revert_message) == (
        "transfer_to_zero_address",
        "ERC20: transfer to the zero address",
    )
    broke = env.token.transfer(env.payer.address, 1, sender=env.outsider)
    assert broke.reason == "insufficient_balance"


def test_transfer_events_filter_by_address(env: Any) -> None:
    start = env.chain.block_number() + 1
    assert env.token.transfer(env.payee.address, 10, sender=env.payer).ok
    assert env.token.transfer(env.relayer.address, 20, sender=env.payer).ok
    assert env.token.transfer(env.relayer.address, 5, sender=env.payee).ok

    everything = env.token.transfer_events(start)
    assert [(e.from_address, e.to, e.value) for e in everything] == [
        (env.payer.address, env.payee.address, 10),
        (env.payer.address, env.relayer.address, 20),
        (env.payee.address, env.relayer.address, 5),
    ]
    payee_only = env.token.transfer_events(start, addresses=[env.payee.address])
    assert [e.value for e in payee_only] == [10, 5]  # as payee, then as payer; no duplicates
    assert all(e.tx_hash.startswith("0x") and e.token == env.asset.address for e in payee_only)
    minted = env.token.transfer_events(0, addresses=[env.payer.address])
    assert minted[0].from_address == "0x" + "00" * 20 and minted[0].value == env.payer_funds


# ---------------------------------------------------------------- batches


def test_a_batch_with_one_bad_item_settles_the_rest(env: Any) -> None:
    settler = BatchSettler(env.chain, deploy_batch_settler(env.chain, sender=env.owner))
    good = [
        sign_authorization(env.payer, env.authorization(1_000 * (i + 1)), env.domain)
        for i in range(3)
    ]
    expired_auth = env.authorization(
        7, valid_after=0, now=env.chain.timestamp() - 100, valid_for_s=10
    )
    bad = sign_authorization(env.payer, expired_auth, env.domain)
    wrong_signer = env.sign(env.authorization(9), signer=env.outsider)
    items = [good[0], bad, good[1], wrong_signer, good[2], good[0]]  # the last is a replay

    settlement = settler.settle(env.asset, items, sender=env.relayer)

    assert settlement.tx.ok and settlement.settled_count == 3
    assert [(item.ok, item.reason) for item in settlement.items] == [
        (True, None),
        (False, "authorization_expired"),
        (True, None),
        (False, "invalid_signature"),
        (True, None),
        (False, "authorization_used_or_canceled"),
    ]
    assert settlement.items[1].revert_message == "FiatTokenV2: authorization is expired"
    assert settlement.items[3].nonce == wrong_signer.authorization.nonce
    assert env.token.balance_of(env.payee.address) == 6_000
    assert not env.token.authorization_state(env.payer.address, expired_auth.nonce)


def test_a_batch_for_a_token_without_code_fails_as_a_whole(env: Any) -> None:
    settler = BatchSettler(env.chain, deploy_batch_settler(env.chain, sender=env.owner))
    signed = sign_authorization(env.payer, env.authorization(), env.domain)
    settlement = settler.settle(env.outsider.address, [signed], sender=env.relayer)
    assert not settlement.tx.ok and settlement.tx.reason == "token_has_no_code"
    assert [(i.ok, i.reason) for i in settlement.items] == [(False, "token_has_no_code")]
