"""Our ``upto`` client and facilitator interoperate with the x402 SDK's, both ways, on anvil.

On an anvil of this module's own (the SDK judges deadlines by the wall
clock, which its blocks follow), with our Permit2 and proxy at the canonical
addresses: the SDK's upto facilitator (``x402.mechanisms.evm.upto``)
verifies a payment signed by our client part and settles a partial charge of
it; our facilitator verifies and settles a payment the SDK's client signed.
Each moves exactly the charge, and the digest we sign is the one the SDK
builds for the same authorization.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme, UptoEvmFacilitatorScheme
from x402.schemas import PaymentPayload, PaymentRequirements

from farthing.devchain.node import start_anvil
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.permit import UPTO_TYPES, permit2_domain
from farthing.paywall.schemes.upto.wire import parse_payment
from farthing.wallet.chain import RpcChain
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def own_anvil(anvil: Any) -> Iterator[RpcChain]:
    with start_anvil() as node:
        yield node.chain()


@pytest.fixture
def chain(own_anvil: RpcChain) -> RpcChain:
    """``upto_env`` on this module's own anvil."""
    return own_anvil


def _sdk_requirements(env: UptoEnv, amount: int) -> PaymentRequirements:
    return PaymentRequirements.model_validate(env.offer(amount).to_wire())


def test_our_digest_is_what_eth_account_signs(upto_env: UptoEnv) -> None:
    env = upto_env
    payment = env.pay()
    types = {"EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ], **UPTO_TYPES}  # fmt: skip
    message = encode_typed_data(
        full_message={
            "types": types,
            "primaryType": "PermitWitnessTransferFrom",
            "domain": permit2_domain(env.chain.chain_id),
            "message": payment.authorization.message(),
        }
    )
    expected = _hash_eip191_message(message)  # eth-account's own digest, the reference
    assert payment.authorization.digest(env.chain.chain_id) == bytes(expected)


def test_the_sdks_facilitator_settles_our_clients_payment(upto_env: UptoEnv) -> None:
    env = upto_env
    key = env.relayer.private_key.get_secret_value()
    sdk = UptoEvmFacilitatorScheme(
        FacilitatorWeb3Signer(private_key=key, rpc_url=env.chain.rpc_url)
    )
    payment = env.pay()
    payload = PaymentPayload.model_validate(payment.to_wire())
    verified = sdk.verify(payload, _sdk_requirements(env, CEILING))
    assert verified.is_valid, verified
    settled = sdk.settle(payload, _sdk_requirements(env, 3_210))
    assert settled.success, settled
    assert env.balance(env.payee) == 3_210 and env.balance(env.payer) == FUNDS - 3_210


def test_our_facilitator_settles_the_sdks_clients_payment(upto_env: UptoEnv) -> None:
    env = upto_env
    signer = EthAccountSigner(Account.from_key(env.payer.private_key.get_secret_value()))
    requirements = _sdk_requirements(env, CEILING)
    inner = UptoEvmClientScheme(signer).create_payment_payload(requirements)
    wire = {
        "x402Version": 2,
        "accepted": requirements.model_dump(by_alias=True, exclude_none=True),
        "payload": inner,
    }
    payment = parse_payment(wire)
    assert not hasattr(payment, "reason"), payment
    ours = UptoFacilitator(env.chain, env.relayer)
    assert ours.verify(payment, env.offer()).valid  # type: ignore[arg-type]
    settled = ours.settle(payment, env.offer().charging(999))  # type: ignore[arg-type]
    assert settled.success and settled.amount == 999
    assert env.balance(env.payee) == 999
