"""The facilitator signs a channel refund only at the receiver's authenticated request, and only of what was not charged.

Issue #17 finding 2, through ``farthing facilitator serve`` started as a real
process on anvil with ``--channel-authorizer-key-file``: a payer deposits
100 × P and the merchant holds its voucher for 10 × P. Without an API key the
facilitator refuses to start (it would sign for anyone). With one, an
anonymous refund of the whole deposit gets 401 and moves nothing; the key
holder (the receiver's server, here through the official x402 SDK client with
its ``create_headers`` hook) cannot have more than the uncharged 90 × P
signed, and the cooperative refund that claims 10 × P and refunds 90 × P
settles. ``facilitator_app`` itself refuses to serve an authorizer with no key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from x402.http import HTTPFacilitatorClientSync

from farthing.paywall import LocalFacilitator
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.schemes.batch_settlement.vouchers import sign_voucher
from farthing.wallet.chain import RpcChain
from tests.chain.test_batch_settlement import FUNDS, Setup, _setup
from tests.chain.test_batch_settlement_x402 import PRICE, _payment, _requirements
from tests.paywall.facilitator_process import (
    API_KEY,
    private_file,
    refused_start,
    running_facilitator,
)
from tests.paywall.test_channel_paywall_facilitator import _deposit

pytestmark = pytest.mark.anvil

DEPOSIT = 100 * PRICE
CHARGED = 10 * PRICE


@pytest.fixture
def setup(anvil_chain: RpcChain) -> Setup:
    return _setup(anvil_chain)


def _keys(s: Setup, tmp_path: Path) -> tuple[Path, Path]:
    relayer = private_file(tmp_path / "relayer.key", s.relayer.private_key.get_secret_value())
    authorizer = private_file(tmp_path / "auth.key", s.authorizer.private_key.get_secret_value())
    return relayer, authorizer


def _sdk_client(url: str) -> HTTPFacilitatorClientSync:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return HTTPFacilitatorClientSync(
        {
            "url": url,
            "create_headers": lambda: {"verify": headers, "settle": headers, "supported": headers},
        }
    )


def _refund(s: Setup, amount: int, claimed: int | None) -> dict[str, Any]:
    voucher = sign_voucher(s.voucher_key, s.domain, s.channel_id, CHARGED)
    body: dict[str, Any] = {
        "type": "refund",
        "channelConfig": s.config.to_wire(),
        "voucher": voucher.to_wire(),
        "amount": str(amount),
        "refundNonce": "0",
    }
    if claimed is not None:
        row = {
            "voucher": {"channel": s.config.to_wire(), "maxClaimableAmount": str(CHARGED)},
            "signature": "0x" + voucher.signature.hex(),
            "totalClaimed": str(claimed),
        }
        body["claims"] = [row]
    return body


def test_with_an_authorizer_and_no_api_key_it_refuses_to_start(
    setup: Setup, tmp_path: Path
) -> None:
    relayer, authorizer = _keys(setup, tmp_path)
    code, err = refused_start(
        setup.chain.rpc_url or "", relayer, tmp_path / "data",
        "--channel-authorizer-key-file", str(authorizer), "--asset", setup.token.address,
    )  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert "--api-key-file" in lines[0]
    assert setup.authorizer.private_key.get_secret_value()[2:] not in err


def test_only_the_key_holder_gets_a_refund_and_only_of_the_uncharged_rest(
    setup: Setup, tmp_path: Path
) -> None:
    s = setup
    relayer, authorizer = _keys(s, tmp_path)
    api_key = private_file(tmp_path / "api.key", API_KEY)
    requirements = _requirements(s)
    with running_facilitator(
        s.chain.rpc_url or "", relayer, tmp_path / "data",
        "--channel-authorizer-key-file", str(authorizer), "--api-key-file", str(api_key),
        "--asset", s.token.address, "--payee", s.receiver,
    ) as fac:  # fmt: skip
        client = _sdk_client(fac.url)
        try:
            deposited = client.settle(_payment(s, _deposit(s, DEPOSIT, CHARGED)), requirements)
            assert deposited.success, deposited
            assert s.escrow.channel(s.channel_id) == (DEPOSIT, 0)

            # Anyone else: the whole deposit back, no claims, no consent.
            wire = {
                "x402Version": 2,
                "paymentPayload": _payment(s, _refund(s, DEPOSIT, None)).model_dump(
                    by_alias=True, exclude_none=True
                ),
                "paymentRequirements": requirements.model_dump(by_alias=True, exclude_none=True),
            }
            anonymous = httpx.post(f"{fac.url}/settle", json=wire, timeout=60)
            assert anonymous.status_code == 401
            assert s.escrow.channel(s.channel_id) == (DEPOSIT, 0)

            # The key holder asks for more than it left uncharged: nothing is signed.
            greedy = client.settle(_payment(s, _refund(s, DEPOSIT, CHARGED)), requirements)
            assert not greedy.success
            assert greedy.error_reason == "invalid_batch_settlement_evm_refund_amount_invalid"
            assert s.escrow.channel(s.channel_id) == (DEPOSIT, 0)

            # The cooperative refund: claim what was charged, return the rest.
            fair = client.settle(_payment(s, _refund(s, DEPOSIT - CHARGED, CHARGED)), requirements)
            assert fair.success, fair
        finally:
            client.close()
    assert s.escrow.channel(s.channel_id) == (CHARGED, CHARGED)
    assert s.token.balance_of(s.payer.address) == FUNDS - CHARGED


def test_the_app_will_not_serve_an_authorizer_to_anonymous_callers(setup: Setup) -> None:
    local = LocalFacilitator(setup.chain, setup.relayer, channel_authorizer=setup.authorizer)
    with pytest.raises(PaywallConfigError, match="API key"):
        facilitator_app(local)
    facilitator_app(local, token=API_KEY)
