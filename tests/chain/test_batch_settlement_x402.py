"""The x402 SDK's own batch-settlement facilitator works unmodified against our contracts on anvil.

The reference ``BatchSettlementEvmFacilitator`` (x402 2.25) talks to a real
anvil through the SDK's ``FacilitatorWeb3Signer``; it hard-codes the canonical
escrow, collector and Multicall3 addresses, so passing means our contracts
sit there and answer as the official ones do. Payloads are the spec's wire
JSON, signed with our own code: a deposit (EIP-3009 to the collector plus the
first voucher), vouchers, then the SDK's claim (claimWithSignature, its
authorizer signing) and settle. The refusals are the spec's error codes.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.batch_settlement import errors as codes
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
from x402.schemas import PaymentPayload, PaymentRequirements, ResourceInfo

from farthing.paywall.schemes.batch_settlement.vouchers import deposit_nonce, sign_voucher
from farthing.wallet.chain import RpcChain
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from tests.chain.test_batch_settlement import FUNDS, Setup, _setup

pytestmark = pytest.mark.anvil
PRICE = 1_000  # atomic units per request


@pytest.fixture
def setup(anvil_chain: RpcChain) -> Setup:
    return _setup(anvil_chain)


@pytest.fixture
def facilitator(setup: Setup) -> BatchSettlementEvmFacilitator:
    assert isinstance(setup.chain, RpcChain) and setup.chain.rpc_url
    relayer_key = setup.relayer.private_key.get_secret_value()
    signer = FacilitatorWeb3Signer(private_key=relayer_key, rpc_url=setup.chain.rpc_url)
    authorizer = LocalAuthorizerSigner(setup.authorizer.private_key.get_secret_value())
    return BatchSettlementEvmFacilitator(signer, authorizer_signer=authorizer)


def _requirements(s: Setup) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="batch-settlement",
        network=s.chain.network,
        asset=s.token.address,
        amount=str(PRICE),
        pay_to=s.receiver,
        max_timeout_seconds=3600,
        extra={
            "receiverAuthorizer": s.authorizer.address,
            "withdrawDelay": s.config.withdraw_delay_s,
            "name": s.token.asset.name,
            "version": s.token.asset.version,
        },
    )


def _payment(s: Setup, payload: dict[str, Any]) -> PaymentPayload:
    return PaymentPayload(
        x402_version=2,
        payload=payload,
        accepted=_requirements(s),
        resource=ResourceInfo(url="http://127.0.0.1/article/1", description="an article"),
    )


def _voucher(s: Setup, ceiling: int, key: LocalSigner | None = None) -> dict[str, Any]:
    signed = sign_voucher(key or s.voucher_key, s.domain, s.channel_id, ceiling)
    return {"type": "voucher", "channelConfig": s.config.to_wire(), "voucher": signed.to_wire()}


def _deposit(s: Setup, amount: int, ceiling: int) -> dict[str, Any]:
    salt = secrets.randbits(256)
    # The SDK checks the window against the wall clock, which anvil's blocks follow.
    auth = build_authorization(
        from_address=s.payer.address,
        to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
        value=amount,
        valid_for_s=3600,
        nonce=deposit_nonce(s.channel_id, salt),
    )
    signed = sign_receive_authorization(s.payer, auth, TokenDomain.for_asset(s.token.asset))
    payload = _voucher(s, ceiling)
    payload["type"] = "deposit"
    payload["deposit"] = {
        "amount": str(amount),
        "authorization": {
            "erc3009Authorization": {
                "validAfter": str(auth.valid_after),
                "validBefore": str(auth.valid_before),
                "salt": "0x" + salt.to_bytes(32, "big").hex(),  # bytes32: leading zeros kept
                "signature": "0x" + signed.signature.hex(),
            }
        },
    }
    return payload


def test_the_sdk_facilitator_deposits_verifies_claims_and_settles_on_our_contracts(
    setup: Setup, facilitator: BatchSettlementEvmFacilitator
) -> None:
    s, requirements = setup, _requirements(setup)
    deposit = _payment(s, _deposit(s, 50_000, PRICE))
    verified = facilitator.verify(deposit, requirements)
    assert verified.is_valid, verified
    settled = facilitator.settle(deposit, requirements)
    assert settled.success, settled
    assert settled.extra is not None and settled.extra["channelState"]["balance"] == "50000"
    assert s.escrow.channel(s.channel_id) == (50_000, 0)
    assert s.token.balance_of(s.payer.address) == FUNDS - 50_000

    # Two more requests, each a cumulative voucher the SDK verifies against the chain.
    for ceiling in (2 * PRICE, 3 * PRICE):
        ok = facilitator.verify(_payment(s, _voucher(s, ceiling)), requirements)
        assert ok.is_valid and ok.extra is not None and ok.extra["balance"] == "50000", ok

    # The server charged 2,600 of the 3,000 ceiling; the SDK signs and submits the claim.
    last = sign_voucher(s.voucher_key, s.domain, s.channel_id, 3 * PRICE)
    claim = {
        "type": "claim",
        "claims": [
            {
                "voucher": {"channel": s.config.to_wire(), "maxClaimableAmount": str(3 * PRICE)},
                "signature": "0x" + last.signature.hex(),
                "totalClaimed": "2600",
            }
        ],
    }
    claimed = facilitator.settle(_payment(s, claim), requirements)
    assert claimed.success, claimed
    assert s.escrow.channel(s.channel_id) == (50_000, 2_600)

    sweep = {"type": "settle", "receiver": s.receiver, "token": s.token.address}
    swept = facilitator.settle(_payment(s, sweep), requirements)
    assert swept.success, swept
    assert s.token.balance_of(s.receiver) == 2_600
    nothing = facilitator.settle(_payment(s, sweep), requirements)
    assert (nothing.success, nothing.error_reason) == (False, codes.ERR_NOTHING_TO_SETTLE)

    # Refusals with the spec's codes, read from our contract's state.
    cases = [
        (_voucher(s, 2_600), codes.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED),  # stale cumulative
        (_voucher(s, 50_001), codes.ERR_CUMULATIVE_EXCEEDS_BALANCE),  # over the balance
        (_voucher(s, 4 * PRICE, key=LocalSigner.generate()), codes.ERR_INVALID_VOUCHER_SIGNATURE),
    ]
    mismatched = _voucher(s, 4 * PRICE)
    mismatched["voucher"]["channelId"] = "0x" + secrets.token_hex(32)
    cases.append((mismatched, codes.ERR_CHANNEL_ID_MISMATCH))
    for payload, reason in cases:
        refused = facilitator.verify(_payment(s, payload), requirements)
        assert (refused.is_valid, refused.invalid_reason) == (False, reason)

    # A wrong receiverAuthorizer in the offer is refused before anything is signed.
    other = _requirements(s)
    other.extra = {**(other.extra or {}), "receiverAuthorizer": LocalSigner.generate().address}
    wrong = facilitator.verify(_payment(s, _voucher(s, 4 * PRICE)), other)
    assert (wrong.is_valid, wrong.invalid_reason) == (False, codes.ERR_RECEIVER_AUTHORIZER_MISMATCH)
    # Nothing moved by any refusal.
    assert s.escrow.channel(s.channel_id) == (50_000, 2_600)
    assert s.token.balance_of(s.receiver) == 2_600
