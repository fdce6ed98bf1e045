"""Every EIP-3009 path of the Stablecoin contract, on the memory chain and on anvil.

Each test deploys a fresh token, signs real EIP-712 authorizations with the
wallet's signer, submits them through ``Stablecoin`` and checks the outcome
value (ok, snake_case reason, FiatToken revert string), balances and
``authorizationState``, for both the v,r,s and the bytes-signature forms.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from farthing.wallet.chain import TRANSFER_TOPIC
from farthing.wallet.eip712 import SECP256K1_N, domain_separator
from farthing.wallet.eip3009 import (
    RECEIVE_WITH_AUTHORIZATION,
    Authorization,
    sign_authorization,
    sign_cancel_authorization,
    sign_receive_authorization,
)

FORMS = ["vrs", "bytes"]


@dataclass(frozen=True)
class RawSigned:
    """An authorization with arbitrary signature bytes, to reach the token's own checks."""

    authorization: Authorization
    signature: bytes


def _malleate(signature: bytes) -> bytes:
    """The other valid signature for the same key and digest: s → n - s, v flipped."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def test_metadata_and_domain_separator_match_the_wallet(env: Any) -> None:
    token = env.token
    assert (token.name(), token.symbol(), token.version(), token.decimals()) == (
        "USD Coin",
        "USDC",
        "2",
        6,
    )
    expected = domain_separator("USD Coin", "2", env.chain.chain_id, env.asset.address)
    assert token.domain_separator() == expected
    assert token.total_supply() == env.payer_funds


@pytest.mark.parametrize("form", FORMS)
def test_transfer_with_authorization_moves_funds_once(env: Any, form: str) -> None:
    auth = env.authorization(1_250_000)
    signed = sign_authorization(env.payer, auth, env.domain)
    assert not env.token.authorization_state(env.payer.address, auth.nonce)

    result = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]

    assert result.ok and result.reason is None
    assert (
        result.tx_hash is not None and result.tx_hash.startswith("0x") and len(result.tx_hash) == 66
    )
    assert env.token.balance_of(env.payee.address) == 1_250_000
    assert env.token.balance_of(env.payer.address) == env.payer_funds - 1_250_000
    assert env.token.authorization_state(env.payer.address, auth.nonce)
    transfers = [log for log in result.logs if log.topics[0] == TRANSFER_TOPIC]
    assert len(transfers) == 1 and int.from_bytes(transfers[0].data, "big") == 1_250_000


@pytest.mark.parametrize("form", FORMS)
def test_replay_is_refused(env: Any, form: str) -> None:
    signed = sign_authorization(env.payer, env.authorization(), env.domain)
    assert env.token.transfer_with_authorization(signed, sender=env.relayer).ok

    replay = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]

    assert not replay.ok and not replay.sent
    assert replay.reason == "authorization_used_or_canceled"
    assert replay.revert_message == "FiatTokenV2: authorization is used or canceled"
    assert env.token.balance_of(env.payee.address) == 1_000_000


@pytest.mark.parametrize("form", FORMS)
def test_expired_authorization_is_refused(env: Any, form: str) -> None:
    now = env.chain.timestamp()
    signed = sign_authorization(
        env.payer, env.authorization(valid_after=0, now=now - 100, valid_for_s=50), env.domain
    )
    result = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (result.ok, result.reason) == (False, "authorization_expired")
    assert result.revert_message == "FiatTokenV2: authorization is expired"


@pytest.mark.parametrize("form", FORMS)
def test_not_yet_valid_authorization_is_refused(env: Any, form: str) -> None:
    now = env.chain.timestamp()
    signed = sign_authorization(
        env.payer, env.authorization(valid_after=now + 3600, valid_for_s=7200), env.domain
    )
    result = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (result.ok, result.reason) == (False, "authorization_not_yet_valid")
    assert result.revert_message == "FiatTokenV2: authorization is not yet valid"


@pytest.mark.parametrize("form", FORMS)
def test_wrong_signer_is_refused(env: Any, form: str) -> None:
    signed = env.sign(env.authorization(), signer=env.outsider)
    result = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (result.ok, result.reason) == (False, "invalid_signature")
    assert result.revert_message == "FiatTokenV2: invalid signature"
    assert env.token.balance_of(env.payer.address) == env.payer_funds


@pytest.mark.parametrize("form", FORMS)
def test_insufficient_balance_is_refused(env: Any, form: str) -> None:
    signed = sign_authorization(env.payer, env.authorization(env.payer_funds + 1), env.domain)
    result = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (result.ok, result.reason) == (False, "insufficient_balance")
    assert result.revert_message == "ERC20: transfer amount exceeds balance"
    assert not env.token.authorization_state(env.payer.address, signed.authorization.nonce)


@pytest.mark.parametrize("form", FORMS)
def test_cancelled_authorization_cannot_be_used(env: Any, form: str) -> None:
    auth = env.authorization()
    signed = sign_authorization(env.payer, auth, env.domain)
    cancel = sign_cancel_authorization(env.payer, nonce=auth.nonce, domain=env.domain)

    cancelled = env.token.cancel_authorization(cancel, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert cancelled.ok
    assert env.token.authorization_state(env.payer.address, auth.nonce)

    used = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (used.ok, used.reason) == (False, "authorization_used_or_canceled")
    again = env.token.cancel_authorization(cancel, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (again.ok, again.reason) == (False, "authorization_used_or_canceled")


def test_cancellation_by_someone_else_is_refused(env: Any) -> None:
    nonce = secrets.token_bytes(32)
    forged = sign_cancel_authorization(env.outsider, nonce=nonce, domain=env.domain)
    # The outsider's signature, claimed for the payer's nonce.
    claim = type(forged)(
        type(forged.cancellation)(env.payer.address, nonce), forged.signature, env.domain
    )
    result = env.token.cancel_authorization(claim, sender=env.relayer)
    assert (result.ok, result.reason) == (False, "invalid_signature")
    assert not env.token.authorization_state(env.payer.address, nonce)


@pytest.mark.parametrize("form", FORMS)
def test_malleable_and_malformed_signatures_are_refused(env: Any, form: str) -> None:
    good = sign_authorization(env.payer, env.authorization(), env.domain)
    high_s = RawSigned(good.authorization, _malleate(good.signature))
    v_zero = RawSigned(good.authorization, good.signature[:64] + bytes([good.signature[64] - 27]))
    cases = {
        "ECRecover: invalid signature 's' value": high_s,
        "ECRecover: invalid signature 'v' value": v_zero,
    }
    for message, signed in cases.items():
        result = env.token.transfer_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
        assert (result.ok, result.reason, result.revert_message) == (
            False,
            "invalid_signature",
            message,
        )
    # The good one still works: the refusals used nothing up.
    assert env.token.transfer_with_authorization(good, sender=env.relayer).ok


def test_signature_that_recovers_to_no_one_is_refused(env: Any) -> None:
    good = sign_authorization(env.payer, env.authorization(), env.domain)
    # r = 0 is not on the curve: ecrecover returns the zero address.
    nobody = RawSigned(good.authorization, bytes(32) + good.signature[32:])
    result = env.token.transfer_with_authorization(nobody, sender=env.relayer, form="bytes")  # type: ignore[arg-type]
    assert (result.reason, result.revert_message) == (
        "invalid_signature",
        "ECRecover: invalid signature",
    )


@pytest.mark.parametrize("form", FORMS)
def test_receive_with_authorization_only_by_the_payee(env: Any, form: str) -> None:
    signed = sign_receive_authorization(env.payer, env.authorization(), env.domain)

    stolen = env.token.receive_with_authorization(signed, sender=env.relayer, form=form)  # type: ignore[arg-type]
    assert (stolen.ok, stolen.reason) == (False, "caller_must_be_payee")
    assert stolen.revert_message == "FiatTokenV2: caller must be the payee"

    received = env.token.receive_with_authorization(signed, sender=env.payee, form=form)  # type: ignore[arg-type]
    assert received.ok
    assert env.token.balance_of(env.payee.address) == 1_000_000


def test_signatures_are_bound_to_their_type(env: Any) -> None:
    transfer_signed = sign_authorization(env.payer, env.authorization(), env.domain)
    as_receive = env.token.receive_with_authorization(transfer_signed, sender=env.payee)
    assert as_receive.reason == "invalid_signature"
    receive_signed = env.sign(env.authorization(), primary_type=RECEIVE_WITH_AUTHORIZATION)
    as_transfer = env.token.transfer_with_authorization(receive_signed, sender=env.relayer)
    assert as_transfer.reason == "invalid_signature"


def test_authorization_for_another_token_is_refused(env: Any, make_env: Any) -> None:
    other = make_env(env.chain)
    signed = sign_authorization(other.payer, other.authorization(), other.domain)
    result = env.token.transfer_with_authorization(signed, sender=env.relayer)
    assert result.reason == "invalid_signature"
