"""The official x402 SDK's facilitator verifies and settles our authorizations for our token on anvil.

The payer signs with Farthing's wallet (``farthing.wallet.eip3009``); the
facilitator is the SDK's own ``x402Facilitator`` with its exact-EVM scheme and
``FacilitatorWeb3Signer`` talking to anvil over HTTP. Success must move the
balances, and the SDK must read our token's FiatToken revert strings as its own
error codes (a replay is ``nonce already used``, a short balance is
``insufficient funds``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from x402 import x402Facilitator
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm import constants as x402_codes
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.schemas import PaymentPayload, PaymentRequirements, ResourceInfo

from farthing.devchain.node import start_anvil
from farthing.wallet.chain import RpcChain
from farthing.wallet.eip3009 import SignedAuthorization, build_authorization, sign_authorization

pytestmark = pytest.mark.anvil

NETWORK = "eip155:31337"


@pytest.fixture(scope="module")
def own_anvil(anvil: Any) -> Iterator[RpcChain]:
    """An anvil of this module's own, so no other test can have moved its clock."""
    with start_anvil() as node:
        yield node.chain()


@pytest.fixture
def anvil_env(own_anvil: RpcChain, make_env: Any) -> Any:
    return make_env(own_anvil)


@pytest.fixture
def facilitator(anvil_env: Any) -> x402Facilitator:
    relayer_key = anvil_env.chain.dev_accounts()[3].private_key.get_secret_value()
    signer = FacilitatorWeb3Signer(private_key=relayer_key, rpc_url=anvil_env.chain.rpc_url)
    return register_exact_evm_facilitator(x402Facilitator(), signer, networks=NETWORK)


def _requirements(env: Any, amount: int) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset=env.asset.address,
        amount=str(amount),
        pay_to=env.payee.address,
        max_timeout_seconds=300,
        extra={"name": env.asset.name, "version": env.asset.version},
    )


def _payload(signed: SignedAuthorization, requirements: PaymentRequirements) -> PaymentPayload:
    return PaymentPayload(
        x402_version=2,
        payload=signed.to_wire(),
        accepted=requirements,
        resource=ResourceInfo(url="http://127.0.0.1/article/1", description="an article"),
    )


def _sign(env: Any, value: int) -> SignedAuthorization:
    # x402 checks the window against the wall clock, which anvil's blocks follow.
    authorization = build_authorization(
        from_address=env.payer.address, to=env.payee.address, value=value
    )
    return sign_authorization(env.payer, authorization, env.domain)


def test_the_x402_facilitator_verifies_and_settles_our_authorization(
    anvil_env: Any, facilitator: x402Facilitator
) -> None:
    env = anvil_env
    requirements = _requirements(env, 10_000)
    payload = _payload(_sign(env, 10_000), requirements)

    verified = asyncio.run(facilitator.verify(payload, requirements))
    assert verified.is_valid, verified
    assert verified.payer == env.payer.address

    settled = asyncio.run(facilitator.settle(payload, requirements))
    assert settled.success, settled
    assert settled.network == NETWORK and settled.transaction.startswith("0x")
    assert env.token.balance_of(env.payee.address) == 10_000
    assert env.token.balance_of(env.payer.address) == env.payer_funds - 10_000
    events = env.token.transfer_events(0, addresses=[env.payee.address])
    assert [(e.tx_hash, e.value) for e in events] == [(settled.transaction, 10_000)]

    replay = asyncio.run(facilitator.verify(payload, requirements))
    assert (replay.is_valid, replay.invalid_reason) == (False, x402_codes.ERR_NONCE_ALREADY_USED)


def test_the_x402_facilitator_reads_our_insufficient_balance_revert(
    anvil_env: Any, facilitator: x402Facilitator
) -> None:
    env = anvil_env
    amount = env.payer_funds + 1
    requirements = _requirements(env, amount)
    result = asyncio.run(
        facilitator.verify(_payload(_sign(env, amount), requirements), requirements)
    )
    assert (result.is_valid, result.invalid_reason) == (False, x402_codes.ERR_INSUFFICIENT_BALANCE)
    assert "ERC20: transfer amount exceeds balance" in (result.invalid_message or "")
