"""The ``upto`` facilitator verifies a signed ceiling and settles exactly the charge, once, or refuses.

On the memory chain and anvil, with our Permit2 and proxy at the canonical
addresses: a valid payment verifies and settles a partial charge (the token
moves exactly that); a charge over the ceiling, a replayed permit, an expired
or too-long deadline, the wrong spender, payee or facilitator, a signature by
someone else, a tampered ceiling, a payer without allowance (the 412 path)
or balance are each refused with the spec's code and move nothing; a zero
charge answers success with no transaction.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from farthing.paywall.schemes.upto import types as codes
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.permit import sign_authorization
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv


def test_a_valid_payment_verifies_and_settles_the_actual_amount(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay()
    offer = env.offer()
    assert env.facilitator.verify(payment, offer).valid
    result = env.facilitator.settle(payment, offer.charging(1_858))
    assert result.success and result.transaction.startswith("0x")
    assert (result.amount, result.payer) == (1_858, env.payer.address)
    assert env.balance(env.payee) == 1_858
    assert env.balance(env.payer) == FUNDS - 1_858


def test_the_whole_ceiling_can_be_charged_and_no_more(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay()
    over = env.facilitator.settle(payment, env.offer().charging(CEILING + 1))
    assert not over.success and over.reason == codes.ERR_SETTLEMENT_EXCEEDS_AMOUNT
    assert env.balance(env.payee) == 0
    assert env.facilitator.settle(payment, env.offer().charging(CEILING)).success
    assert env.balance(env.payee) == CEILING


def test_verify_wants_the_ceiling_as_the_amount(upto_env: UptoEnv) -> None:
    env = upto_env
    answer = env.facilitator.verify(env.pay(), env.offer().charging(CEILING - 1))
    assert answer.reason == codes.ERR_AMOUNT_MISMATCH


def test_a_replayed_permit_is_refused_and_moves_nothing(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay()
    assert env.facilitator.settle(payment, env.offer().charging(100)).success
    again = env.facilitator.settle(payment, env.offer().charging(100))
    assert not again.success and again.reason == codes.ERR_NONCE_USED
    # Another facilitator process with the same key (no journal): the chain's nonce refuses it.
    other = UptoFacilitator(env.chain, env.relayer)
    assert other.verify(payment, env.offer()).reason == codes.ERR_NONCE_USED
    replay = other.settle(payment, env.offer().charging(100))
    assert not replay.success and replay.reason == codes.ERR_NONCE_USED
    assert env.balance(env.payee) == 100


def test_an_expired_deadline_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    old = env.chain.timestamp() - 1_000
    from farthing.paywall.schemes.upto.client import upto_payment

    payment = upto_payment(env.offer(), env.payer, now=old)
    assert env.facilitator.verify(payment, env.offer()).reason == codes.ERR_DEADLINE_EXPIRED
    settled = env.facilitator.settle(payment, env.offer().charging(1))
    assert settled.reason == codes.ERR_DEADLINE_EXPIRED and env.balance(env.payee) == 0


def test_a_deadline_beyond_the_offers_timeout_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay(env.offer(max_timeout_seconds=7 * 86400))
    assert env.facilitator.verify(payment, env.offer()).reason == codes.ERR_DEADLINE_TOO_LONG


def _resign(env: UptoEnv, payment, **changes):  # type: ignore[no-untyped-def]
    authorization = replace(payment.authorization, **changes)
    signature = sign_authorization(env.payer, authorization, env.chain.chain_id)
    return replace(payment, authorization=authorization, signature=signature)


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("spender", codes.ERR_SPENDER),
        ("to", codes.ERR_RECIPIENT_MISMATCH),
        ("facilitator", codes.ERR_FACILITATOR_MISMATCH),
    ],
)
def test_the_wrong_spender_payee_or_facilitator_is_refused(
    upto_env: UptoEnv, field: str, reason: str
) -> None:
    env = upto_env
    payment = _resign(env, env.pay(), **{field: env.outsider.address})
    assert env.facilitator.verify(payment, env.offer()).reason == reason
    assert env.facilitator.settle(payment, env.offer().charging(1)).reason == reason
    assert env.balance(env.outsider) == FUNDS and env.balance(env.payee) == 0


def test_a_signature_by_someone_else_or_over_another_ceiling_is_refused(
    upto_env: UptoEnv,
) -> None:
    env = upto_env
    payment = env.pay()
    # The outsider signs a permit naming the payer as from: a payer who is not the one owed.
    forged = replace(
        payment,
        signature=env.outsider.sign_typed_data(
            *_typed(env, payment.authorization)  # type: ignore[arg-type]
        ),
    )
    assert env.facilitator.verify(forged, env.offer()).reason == codes.ERR_INVALID_SIGNATURE
    # The ceiling raised after signing.
    raised = replace(payment, authorization=replace(payment.authorization, amount=CEILING * 2))
    answer = env.facilitator.verify(raised, env.offer(CEILING * 2))
    assert answer.reason == codes.ERR_INVALID_SIGNATURE
    assert env.facilitator.settle(raised, env.offer(CEILING * 2)).reason == (
        codes.ERR_INVALID_SIGNATURE
    )
    assert env.balance(env.payee) == 0


def _typed(env: UptoEnv, authorization):  # type: ignore[no-untyped-def]
    from farthing.paywall.schemes.upto.permit import UPTO_TYPES, permit2_domain

    types = {k: [dict(f) for f in v] for k, v in UPTO_TYPES.items()}
    return (
        permit2_domain(env.chain.chain_id),
        types,
        "PermitWitnessTransferFrom",
        authorization.message(),
    )


def test_a_payer_without_permit2_allowance_gets_the_412_reason(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay(signer=env.fresh)
    answer = env.facilitator.verify(payment, env.offer())
    assert (answer.valid, answer.reason) == (False, codes.ERR_ALLOWANCE_REQUIRED)
    settled = env.facilitator.settle(payment, env.offer().charging(1))
    assert settled.reason == codes.ERR_ALLOWANCE_REQUIRED
    assert env.balance(env.fresh) == FUNDS


def test_a_payer_without_the_balance_is_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay(env.offer(FUNDS + 1))
    assert env.facilitator.verify(payment, env.offer(FUNDS + 1)).reason == (
        codes.ERR_INSUFFICIENT_BALANCE
    )


def test_a_zero_charge_sends_no_transaction(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay()
    block = env.chain.block_number()
    result = env.facilitator.settle(payment, env.offer().charging(0))
    assert (result.success, result.transaction, result.amount) == (True, "", 0)
    assert env.chain.block_number() == block
    assert env.balance(env.payer) == FUNDS
    # The permit was used up here: it is not settled a second time.
    assert not env.facilitator.settle(payment, env.offer().charging(10)).success
    assert not env.facilitator.verify(payment, env.offer()).valid


def test_requirements_on_another_network_are_refused(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay()
    other = env.offer(network="eip155:1")
    answer = env.facilitator.verify(replace(payment, accepted=other), other)
    assert answer.reason == codes.ERR_NETWORK_MISMATCH


def test_only_the_named_facilitator_can_settle_on_chain(upto_env: UptoEnv) -> None:
    """Someone who saw the header calls the proxy themselves: the proxy refuses, nothing moves."""
    from farthing.paywall.schemes.upto.contract import custom_error_name, settle_call

    env = upto_env
    payment = env.pay()
    auth = payment.authorization
    call = settle_call(
        auth.permit_args(), CEILING, auth.from_address, auth.witness_args(), payment.signature
    )
    result = env.chain.call(call, sender=env.outsider.address)
    assert not result.ok and custom_error_name(result.revert_message) == "UnauthorizedFacilitator"
    # Nor can a witness naming the outsider be settled by it toward another payee.
    sent = env.chain.send(call, sender=env.outsider)
    assert not sent.ok and env.balance(env.payer) == FUNDS
    # The named facilitator can, for at most the ceiling.
    over = settle_call(
        auth.permit_args(), CEILING + 1, auth.from_address, auth.witness_args(), payment.signature
    )
    refused = env.chain.call(over, sender=env.relayer.address)
    assert custom_error_name(refused.revert_message) == "AmountExceedsPermitted"
