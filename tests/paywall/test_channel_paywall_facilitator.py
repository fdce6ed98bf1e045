"""Our facilitator verifies and settles batch-settlement payloads as the x402 SDK's server expects.

The SDK's own ``HTTPFacilitatorClientSync`` talks to ``facilitator_app`` (the
app ``farthing facilitator serve`` runs) over real HTTP on 127.0.0.1, against
our contracts at the canonical addresses on anvil: ``/supported`` lists the
scheme with our receiver authorizer, a deposit is verified and settled on
chain, vouchers verify against the chain, then the server-side ``claim``
(unsigned, so our facilitator signs as the authorizer) and ``settle``, and an
enriched ``refund``. On-chain balances are checked after each step, and the
refusals carry the spec's codes and move nothing.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from x402.http import HTTPFacilitatorClientSync
from x402.mechanisms.evm.batch_settlement import errors as codes

from farthing.paywall import LocalFacilitator
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.schemes.batch_settlement.vouchers import deposit_nonce, sign_voucher
from farthing.wallet.chain import RpcChain
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from tests.chain.test_batch_settlement import FUNDS, Setup, _setup
from tests.chain.test_batch_settlement_x402 import (
    PRICE,
    _payment,
    _requirements,
    _voucher,
)
from tests.paywall.conftest import serve_in_thread

pytestmark = pytest.mark.anvil


def _deposit(s: Setup, amount: int, ceiling: int) -> dict[str, Any]:
    """A deposit payload whose window follows the chain's clock (other tests move anvil's)."""
    salt = secrets.randbits(256)
    auth = build_authorization(
        from_address=s.payer.address,
        to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
        value=amount,
        valid_for_s=3600,
        now=s.chain.timestamp(),
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


@pytest.fixture
def setup(anvil_chain: RpcChain) -> Setup:
    return _setup(anvil_chain)


def test_the_sdk_facilitator_client_deposits_claims_settles_and_refunds_through_ours(
    setup: Setup,
) -> None:
    s = setup
    ours = LocalFacilitator(s.chain, s.relayer, channel_authorizer=s.authorizer)
    # It signs claims and refunds as the receiver authorizer: only for API key holders.
    key = "an-api-key-for-the-receivers-servers"
    auth = {"Authorization": f"Bearer {key}"}
    with serve_in_thread(facilitator_app(ours, token=key)) as url:
        client = HTTPFacilitatorClientSync(
            {
                "url": url,
                "create_headers": lambda: {"verify": auth, "settle": auth, "supported": auth},
            }
        )
        try:
            _drive(s, client)
        finally:
            client.close()


def _drive(s: Setup, client: HTTPFacilitatorClientSync) -> None:
    requirements = _requirements(s)
    supported = client.get_supported()
    kinds = [k for k in supported.kinds if k.scheme == "batch-settlement"]
    assert [k.network for k in kinds] == [s.chain.network]
    assert kinds[0].extra == {"receiverAuthorizer": s.authorizer.address}

    deposit = _payment(s, _deposit(s, 50_000, PRICE))
    verified = client.verify(deposit, requirements)
    assert verified.is_valid, verified
    settled = client.settle(deposit, requirements)
    assert settled.success and settled.transaction, settled
    assert settled.extra is not None and settled.extra["channelState"]["balance"] == "50000"
    assert s.escrow.channel(s.channel_id) == (50_000, 0)
    # The same deposit again: its EIP-3009 nonce is spent, nothing moves twice.
    again = client.settle(deposit, requirements)
    assert not again.success
    assert again.error_reason == "invalid_batch_settlement_evm_deposit_simulation_failed"
    assert s.token.balance_of(s.payer.address) == FUNDS - 50_000

    for ceiling in (2 * PRICE, 3 * PRICE):
        ok = client.verify(_payment(s, _voucher(s, ceiling)), requirements)
        assert ok.is_valid and ok.extra is not None and ok.extra["balance"] == "50000", ok

    last = sign_voucher(s.voucher_key, s.domain, s.channel_id, 3 * PRICE)
    row = {
        "voucher": {"channel": s.config.to_wire(), "maxClaimableAmount": str(3 * PRICE)},
        "signature": "0x" + last.signature.hex(),
        "totalClaimed": "2600",
    }
    claimed = client.settle(_payment(s, {"type": "claim", "claims": [row]}), requirements)
    assert claimed.success, claimed
    assert s.escrow.channel(s.channel_id) == (50_000, 2_600)

    sweep = {"type": "settle", "receiver": s.receiver, "token": s.token.address}
    swept = client.settle(_payment(s, sweep), requirements)
    assert swept.success and swept.amount == "2600", swept
    assert s.token.balance_of(s.receiver) == 2_600
    nothing = client.settle(_payment(s, sweep), requirements)
    assert (nothing.success, nothing.error_reason) == (False, codes.ERR_NOTHING_TO_SETTLE)

    # Refusals with the spec's codes.
    cases = [
        (_voucher(s, 2_600), codes.ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED),
        (_voucher(s, 50_001), codes.ERR_CUMULATIVE_EXCEEDS_BALANCE),
        (_voucher(s, 4 * PRICE, key=LocalSigner.generate()), codes.ERR_INVALID_VOUCHER_SIGNATURE),
    ]  # fmt: skip
    mismatched = _voucher(s, 4 * PRICE)
    mismatched["voucher"]["channelId"] = "0x" + secrets.token_hex(32)
    cases.append((mismatched, codes.ERR_CHANNEL_ID_MISMATCH))
    for payload, reason in cases:
        refused = client.verify(_payment(s, payload), requirements)
        assert (refused.is_valid, refused.invalid_reason) == (False, reason)
    other = _requirements(s)
    other.extra = {**(other.extra or {}), "receiverAuthorizer": LocalSigner.generate().address}
    wrong = client.verify(_payment(s, _voucher(s, 4 * PRICE)), other)
    assert (wrong.is_valid, wrong.invalid_reason) == (
        False,
        codes.ERR_RECEIVER_AUTHORIZER_MISMATCH,
    )

    # A cooperative refund as the SDK server enriches it: claim 3,000 and refund the rest.
    refund = {
        "type": "refund",
        "channelConfig": s.config.to_wire(),
        "voucher": last.to_wire(),
        "amount": str(50_000 - 3 * PRICE),
        "refundNonce": "0",
        "claims": [{**row, "totalClaimed": str(3 * PRICE)}],
    }
    refunded = client.settle(_payment(s, refund), requirements)
    assert refunded.success and refunded.amount == str(47_000), refunded
    assert s.escrow.channel(s.channel_id) == (3_000, 3_000)
    assert s.token.balance_of(s.payer.address) == FUNDS - 50_000 + 47_000
