"""Hostile contract wallets cannot spend what is not theirs, stall verify, keep state or slip past a size bound.

On a module anvil with our token and facilitator: a contract that says yes
to every ERC-1271 question pays only from its own balance, and cannot
authorize a transfer from someone else's key-held account (with or without
an ERC-6492 wrapper naming it as the "factory"); a factory call that burns
all its gas or writes state without deploying is refused quickly, its state
change is not kept and nothing is sent; an EIP-7702 account that swaps its
delegate between verify and settle gets a reverted settlement that moves
nothing; an oversized signature is refused with a reason, at the wire and in
the check.
"""

from __future__ import annotations

import os
import time

import pytest

from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.schemes.signatures import CALL_GAS_MAX, check_signature
from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequirements,
    b64_json,
    decode_payment_signature,
)
from farthing.wallet.eip712 import authorization_digest
from farthing.wallet.eip3009 import build_authorization, sign_authorization
from farthing.wallet.erc6492 import SIGNATURE_BYTES_MAX, unwrap, wrap
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import ChainEnv, chain_env, run
from tests.paywall.smart_accounts import (
    COUNTING_FACTORY,
    GAS_BURNER,
    REFUSING_WALLET,
    YES_WALLET,
    Accounts,
    accounts_on,
    contract_at,
    delegate_7702,
)

pytestmark = pytest.mark.anvil
__all__ = ["chain_env"]

PRICE = 10_000


@pytest.fixture(scope="module")
def accounts(chain_env: ChainEnv) -> Accounts:
    return accounts_on(chain_env.chain, chain_env.owner)


def requirements_of(env: ChainEnv) -> PaymentRequirements:
    return PaymentRequirements(
        network=env.chain.network, asset=env.asset.address, amount=PRICE, pay_to=env.merchant,
        max_timeout_seconds=300, token_name=env.asset.name, token_version=env.asset.version,
    )  # fmt: skip


def payload_from(env: ChainEnv, payer: str, signature: bytes) -> PaymentPayload:
    requirements = requirements_of(env)
    authorization = build_authorization(
        from_address=payer, to=env.merchant, value=PRICE, valid_for_s=120
    )
    return PaymentPayload(accepted=requirements, authorization=authorization, signature=signature)


def relayer_sent(env: ChainEnv) -> int:
    return int(env.chain.w3.eth.get_transaction_count(env.relayer.address))


def test_a_yes_wallet_pays_only_from_itself(chain_env: ChainEnv) -> None:
    env = chain_env
    facilitator = env.facilitator()
    yes = contract_at(env.chain, YES_WALLET)
    assert env.token.mint(yes, 50_000, sender=env.owner).ok
    victim = env.new_payer(funds=50_000)
    junk = os.urandom(65)

    # Its own money: any signature does, as the wallet says (that is its owner's choice).
    own = payload_from(env, yes, junk)
    assert run(facilitator.verify(own, own.accepted)).valid
    assert run(facilitator.settle(own, own.accepted)).success
    assert env.token.balance_of(yes) == 50_000 - PRICE

    # Someone else's: the victim has no code, so only the victim's key can sign.
    theirs = payload_from(env, victim.address, junk)
    verdict = run(facilitator.verify(theirs, theirs.accepted))
    assert not verdict.valid and verdict.reason == "invalid_signature"
    # Wrapped in ERC-6492 with the yes wallet as "factory": the call deploys
    # nothing at the victim's address, so there is still no wallet to ask.
    wrapped = wrap(yes, b"\x01", junk)
    dressed = payload_from(env, victim.address, wrapped)
    verdict = run(facilitator.verify(dressed, dressed.accepted))
    assert not verdict.valid and "erc6492_not_deployed" in (verdict.message or "")
    sent = relayer_sent(env)
    settled = run(facilitator.settle(dressed, dressed.accepted))
    assert not settled.success
    assert relayer_sent(env) == sent
    assert env.token.balance_of(victim.address) == 50_000


def test_a_gas_burning_factory_is_refused_quickly(chain_env: ChainEnv, accounts: Accounts) -> None:
    env = chain_env
    burner = contract_at(env.chain, GAS_BURNER)
    account = accounts.new(deployed=False)
    assert env.token.mint(account.address, 50_000, sender=env.owner).ok
    inner = sign_authorization(
        account.owner_signer, build_authorization(
            from_address=account.owner, to=env.merchant, value=PRICE, valid_for_s=120
        ), requirements_of(env).domain(),
    ).signature  # fmt: skip
    payload = payload_from(env, account.address, wrap(burner, b"\x00", inner))
    started = time.monotonic()
    verdict = run(env.facilitator().verify(payload, payload.accepted))
    assert time.monotonic() - started < 5.0
    assert not verdict.valid and "erc6492_factory_failed" in (verdict.message or "")
    # And a wallet whose isValidSignature burns its gas answers "no", bounded.
    digest = authorization_digest(payload.authorization, payload.accepted.domain())
    burning_wallet = contract_at(env.chain, GAS_BURNER)
    check = check_signature(env.chain, burning_wallet, digest, inner)
    assert not check.valid and check.reason == "erc1271_refused"
    assert CALL_GAS_MAX <= 1_000_000


def test_a_refused_factory_call_keeps_no_state_and_sends_nothing(
    chain_env: ChainEnv, accounts: Accounts
) -> None:
    env = chain_env
    counting = contract_at(env.chain, COUNTING_FACTORY)
    account = accounts.new(deployed=False)
    assert env.token.mint(account.address, 50_000, sender=env.owner).ok
    payload = payload_from(env, account.address, wrap(counting, b"\x01", os.urandom(65)))
    facilitator = env.facilitator()
    sent = relayer_sent(env)
    verdict = run(facilitator.verify(payload, payload.accepted))
    assert not verdict.valid and "erc6492_not_deployed" in (verdict.message or "")
    assert not run(facilitator.settle(payload, payload.accepted)).success
    assert int.from_bytes(env.chain.w3.eth.get_storage_at(counting, 0), "big") == 0
    assert relayer_sent(env) == sent
    assert not env.chain.code_at(account.address)
    assert env.token.balance_of(account.address) == 50_000


def test_an_eip7702_delegate_swapped_after_verify_moves_nothing(
    chain_env: ChainEnv, accounts: Accounts
) -> None:
    env = chain_env
    eoa = LocalSigner.generate()
    delegate_7702(env.chain, eoa, accounts.new(deployed=True).address, sponsor=env.owner)
    assert env.token.mint(eoa.address, 50_000, sender=env.owner).ok
    requirements = requirements_of(env)
    authorization = build_authorization(
        from_address=eoa.address, to=env.merchant, value=PRICE, valid_for_s=120
    )
    signed = sign_authorization(eoa, authorization, requirements.domain())
    payload = PaymentPayload(
        accepted=requirements, authorization=authorization, signature=signed.signature
    )
    facilitator: LocalFacilitator = env.facilitator()
    assert run(facilitator.verify(payload, requirements)).valid
    # Now the account delegates to a wallet that refuses every signature.
    delegate_7702(env.chain, eoa, contract_at(env.chain, REFUSING_WALLET), sponsor=env.owner)
    before = env.token.balance_of(env.merchant)
    settled = run(facilitator.settle(payload, requirements))
    assert not settled.success
    assert env.token.balance_of(eoa.address) == 50_000
    assert env.token.balance_of(env.merchant) == before
    assert not env.token.authorization_state(eoa.address, authorization.nonce)


def test_an_oversized_signature_is_refused_with_a_reason(chain_env: ChainEnv) -> None:
    env = chain_env
    payer = env.new_payer(funds=50_000)
    too_long = os.urandom(SIGNATURE_BYTES_MAX + 1)
    assert unwrap(too_long + bytes.fromhex("6492" * 16)) == "signature_too_large"
    digest = os.urandom(32)
    check = check_signature(env.chain, payer.address, digest, os.urandom(SIGNATURE_BYTES_MAX))
    assert not check.valid and check.reason == "invalid_signature"
    # On the wire: a header carrying one is a malformed payment (the paywall's 400),
    # even where the header's own bound would let it through.
    wire = payload_from(env, payer.address, os.urandom(65)).to_wire()
    wire["payload"]["signature"] = "0x" + too_long.hex()
    decoded = decode_payment_signature(b64_json(wire), bytes_max=64_000)
    assert not isinstance(decoded, PaymentPayload)
    assert decoded.reason == "invalid_payment_payload"
