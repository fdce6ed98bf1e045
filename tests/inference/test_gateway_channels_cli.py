"""``farthing inference gateway --channel-*`` sells per token through batch-settlement channels, as a real process.

Real pieces: the gateway process on the shared anvil chain with our escrow at
its canonical address, the local facilitator, a SQLite payment database, and
the x402 SDK's own batch-settlement client paying two chat completions over
one deposit. Only vLLM is the fake (``fake_vllm.py``, a real server process
answering five completion tokens). The 402 offers ``exact`` and
``batch-settlement``; each call is charged its real usage, below the
voucher's ceiling; the gateway's own background claimer (run beside the
gateway's lifespan) claims and settles, so the merchant's on-chain balance
ends equal to what the channel was charged. A loose authorizer key file, and
channel options on a free gateway, are one line each.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy

from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.paywall.wire import unb64_json
from farthing.wallet.chain import RpcChain
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.inference.conftest import PAYER_FUNDS, fake_vllm_process
from tests.inference.fake_vllm import MODEL
from tests.inference.test_cli import farthing, gateway_process, one_error_line

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "a farthing?"}], "max_tokens": 40}


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


def _sdk_client(network: str, asset: Asset, payer: LocalSigner) -> x402Client:
    account = Account.from_key(payer.private_key.get_secret_value())
    client = x402Client()
    policy = BatchSettlementDepositPolicy(deposit_multiplier=5)
    client.register(network, BatchSettlementEvmScheme(account, policy))
    client.set_spend_controls({"allowed_assets": [{"network": network, "asset": asset.address}]})
    return client


@pytest.mark.anvil
def test_gateway_channel_flags_sell_per_token_and_claim(
    anvil_chain: RpcChain, tmp_path: Path
) -> None:
    place_channel_contracts(anvil_chain)
    accounts = anvil_chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[8]
    asset = deploy_stablecoin(anvil_chain, sender=owner)
    token = Stablecoin(anvil_chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    payer = LocalSigner.generate()
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    merchant = LocalSigner.generate().address
    authorizer = LocalSigner.generate()
    key_file = _private(tmp_path / "relayer.key", relayer.private_key.get_secret_value())
    auth_file = _private(tmp_path / "authorizer.key", authorizer.private_key.get_secret_value())
    args = [
        "--pay-to", merchant, "--rpc-url", anvil_chain.rpc_url or "", "--token", asset.address,
        "--key-file", str(key_file), "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}",
        "--channel-authorizer-key-file", str(auth_file), "--channel-withdraw-delay-s", "3600",
        "--channel-min-deposit", "0.001 USDC", "--channel-claim-interval-s", "0.5",
        "--channel-claim-threshold", "0.000001 USDC",
    ]  # fmt: skip

    async def pay(url: str) -> tuple[httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=30.0) as plain:
            offer = await plain.post(f"{url}/v1/chat/completions", json=BODY)
        client = _sdk_client(anvil_chain.network, asset, payer)
        async with x402HttpxClient(client, timeout=60.0) as http:
            paid = [await http.post(f"{url}/v1/chat/completions", json=BODY) for _ in range(2)]
        return offer, paid

    printed: list[str] = []
    with (
        fake_vllm_process() as (upstream, _),
        gateway_process(["--upstream", upstream, *args], tmp_path, printed) as (ready, _),
    ):
        assert ready["channels"] == {
            "receiver_authorizer": authorizer.address,
            "withdraw_delay_s": 3600,
        }
        offer, paid = asyncio.run(pay(ready["url"]))
        assert offer.status_code == 402
        accepts = unb64_json(offer.headers["payment-required"])["accepts"]
        assert [a["scheme"] for a in accepts] == ["exact", "batch-settlement"]
        extra = accepts[1]["extra"]
        assert extra["receiverAuthorizer"] == authorizer.address
        assert (extra["withdrawDelay"], extra["minDeposit"]) == (3600, "1000")
        ceiling = int(accepts[1]["amount"])
        charged = 0
        for answer in paid:
            assert answer.status_code == 200, answer.text
            receipt = unb64_json(answer.headers["payment-response"])
            charge = int(receipt["extra"]["chargedAmount"])
            assert 0 < charge < ceiling  # the real usage, under the quote
            charged += charge
        assert receipt["extra"]["channelState"]["chargedCumulativeAmount"] == str(charged)
        # The claimer beside the gateway claims (threshold: one atomic unit) and settles.
        deadline = time.monotonic() + 90
        while token.balance_of(merchant) < charged:
            assert time.monotonic() < deadline, "the gateway's claimer never settled"
            time.sleep(0.5)
    assert token.balance_of(merchant) == charged
    for text in printed:
        assert authorizer.private_key.get_secret_value()[2:] not in text
        assert relayer.private_key.get_secret_value().removeprefix("0x") not in text


def test_gateway_channel_bad_input_is_one_line(tmp_path: Path) -> None:
    secret = "0x" + "ab" * 32
    loose = _private(tmp_path / "authorizer.key", secret, mode=0o644)
    key = _private(tmp_path / "relayer.key", secret)
    base = [
        "inference", "gateway", "--upstream", "http://127.0.0.1:9", "--pay-to", "0x" + "ab" * 20,
        "--rpc-url", "http://127.0.0.1:9", "--token", "0x" + "cd" * 20, "--key-file", str(key),
    ]  # fmt: skip
    result = farthing([*base, "--channel-authorizer-key-file", str(loose)], tmp_path)
    line = one_error_line(result)
    assert "chmod 600" in line and "authorizer.key" in line
    assert secret[2:] not in result.stdout + result.stderr
    free = farthing(
        ["inference", "gateway", "--upstream", "http://127.0.0.1:9", "--free",
         "--channel-withdraw-delay-s", "900"],
        tmp_path,
    )  # fmt: skip
    assert "--free charges nothing" in one_error_line(free)
