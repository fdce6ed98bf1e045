"""The x402 SDK's batch-settlement client pays our middleware: one deposit, many vouchers, then claims.

All real: anvil with our contracts at the canonical addresses, our token, a
SQLite payment database, uvicorn on 127.0.0.1, and the SDK's own
``x402HttpxClient`` with its ``BatchSettlementEvmScheme`` registered for the
chain. The route offers ``exact`` and ``batch-settlement``; the client takes
the channel. We count the deposit transactions, check every
``PAYMENT-RESPONSE`` (``chargedAmount``, ``channelState``), then claim and
settle and check that the receiver's on-chain balance equals what the
channel rows say was earned. Refusals (a stale voucher's corrective 402, a
wrong receiverAuthorizer, another key, a replayed voucher) and the dynamic
price (``Farthing-Charge``) are driven with our own signing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.batch_settlement.client.config import BatchSettlementDepositPolicy

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow, VoucherClaim
from farthing.paywall.schemes.batch_settlement.server import CHARGE_HEADER, ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    ClaimEntry,
    deposit_nonce,
    place_channel_contracts,
    sign_claim_batch,
    sign_voucher,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client, serve_in_thread

pytestmark = pytest.mark.anvil
DELAY_S = 900


async def _data(request: Request) -> Response:
    return JSONResponse({"secret": "paid-data"})


async def _metered(request: Request) -> Response:
    # Per-token metering in miniature: the handler knows its real cost afterwards.
    used = int(request.query_params.get("used", "0"))
    return JSONResponse({"used": used}, headers={CHARGE_HEADER: str(used)})


async def _boom(request: Request) -> Response:
    return JSONResponse({"error": "upstream"}, status_code=502)


@pytest.fixture(name="channel_store")
def channel_store_fixture(chain_env: ChainEnv, tmp_path: Path) -> Iterator[ChannelStore]:
    place_channel_contracts(chain_env.chain)
    store = ChannelStore(
        f"sqlite:///{tmp_path / 'paywall.sqlite'}",
        domain=ChannelDomain(chain_env.chain.chain_id),
        network=chain_env.chain.network,
        escrow=ChannelEscrow(chain_env.chain),
    )
    yield store
    store.dispose()


def _app(
    env: ChainEnv, store: PaymentStore, channels: ChannelStore, authorizer: LocalSigner
) -> PaywallMiddleware:
    inner = Starlette(
        routes=[
            Route("/api/data", _data),
            Route("/api/metered", _metered),
            Route("/api/boom", _boom),
        ]
    )
    routes = [PaidRoute("/api/**", PRICE_ATOMIC, schemes=("exact", "batch-settlement"))]
    return PaywallMiddleware(
        inner,
        options=PaywallOptions(
            routes=routes,
            facilitator=env.facilitator(),
            store=store,
            pay_to=env.merchant,
            asset=env.asset,
            channels=ChannelOptions(channels, authorizer, withdraw_delay_s=DELAY_S),
        ),
    )


def _sdk_client(env: ChainEnv, payer: LocalSigner) -> x402Client:
    account = Account.from_key(payer.private_key.get_secret_value())
    client = x402Client()
    policy = BatchSettlementDepositPolicy(deposit_multiplier=50)
    client.register(env.chain.network, BatchSettlementEvmScheme(account, policy))
    client.set_spend_controls(
        {"allowed_assets": [{"network": env.chain.network, "asset": env.asset.address}]}
    )
    return client


def test_the_sdk_channel_client_pays_many_times_with_one_deposit(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, payer, authorizer = chain_env, chain_env.new_payer(), LocalSigner.generate()
    requests_n = 12
    block_before = env.chain.block_number()

    async def go(url: str) -> list[httpx.Response]:
        async with x402HttpxClient(_sdk_client(env, payer), timeout=30.0) as http:
            return [await http.get(f"{url}/api/data") for _ in range(requests_n)]

    with serve_in_thread(_app(env, store, channel_store, authorizer)) as url:
        responses = asyncio.run(go(url))
    for n, response in enumerate(responses, start=1):
        assert response.status_code == 200, response.text
        assert response.json() == {"secret": "paid-data"}
        receipt = unb64_json(response.headers["payment-response"])
        assert receipt["success"] is True and receipt["extra"]["chargedAmount"] == str(PRICE_ATOMIC)
        state = receipt["extra"]["channelState"]
        assert state["chargedCumulativeAmount"] == str(n * PRICE_ATOMIC)
    # One on-chain transaction for all of it: the deposit.
    assert env.chain.block_number() - block_before == 1
    deposit = 50 * PRICE_ATOMIC
    assert env.token.balance_of(payer.address) == 50_000_000 - deposit
    (record,) = channel_store.records()
    assert record.charged == requests_n * PRICE_ATOMIC and record.balance == deposit
    assert store.records() == []  # no exact payment was made

    # Claim and settle what was earned: the receiver's balance equals the books.
    claim = VoucherClaim(record.config, record.signed_max, record.signature or b"", record.charged)
    escrow = ChannelEscrow(env.chain)
    assert escrow.claim([claim], sender=env.relayer).ok is False  # only the receiver side may

    entry = ClaimEntry(record.channel_id, record.signed_max, record.charged)
    signature = sign_claim_batch(authorizer, channel_store.domain, [entry])
    assert escrow.claim_with_signature([claim], signature, sender=env.relayer).ok
    assert escrow.settle(env.merchant, env.asset.address, sender=env.relayer).ok
    assert env.token.balance_of(env.merchant) == requests_n * PRICE_ATOMIC


# ---------------------------------------------------------------- our own signing


def _header(env: ChainEnv, payload: dict[str, Any], authorizer: LocalSigner) -> str:
    accepted = {
        "scheme": "batch-settlement",
        "network": env.chain.network,
        "asset": env.asset.address,
        "amount": str(PRICE_ATOMIC),
        "payTo": env.merchant,
        "maxTimeoutSeconds": 300,
        "extra": {
            "receiverAuthorizer": authorizer.address,
            "withdrawDelay": DELAY_S,
            "name": env.asset.name,
            "version": env.asset.version,
        },
    }
    body = {"x402Version": 2, "payload": payload, "accepted": accepted}
    return base64.b64encode(json.dumps(body).encode()).decode()


class _Channel:
    def __init__(self, env: ChainEnv, authorizer: LocalSigner) -> None:
        self.env, self.authorizer = env, authorizer
        self.payer = env.new_payer()
        self.domain = ChannelDomain(env.chain.chain_id)
        self.config = ChannelConfig(
            payer=self.payer.address,
            payer_authorizer=self.payer.address,
            receiver=env.merchant,
            receiver_authorizer=authorizer.address,
            token=env.asset.address,
            withdraw_delay_s=DELAY_S,
            salt=secrets.token_bytes(32),
        )
        self.id = self.domain.channel_id(self.config)

    def voucher(self, ceiling: int, key: LocalSigner | None = None) -> dict[str, Any]:
        signed = sign_voucher(key or self.payer, self.domain, self.id, ceiling)
        return {
            "type": "voucher",
            "channelConfig": self.config.to_wire(),
            "voucher": signed.to_wire(),
        }

    def deposit(self, amount: int, ceiling: int) -> dict[str, Any]:
        salt = secrets.randbits(256)
        auth = build_authorization(
            from_address=self.payer.address,
            to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
            value=amount,
            valid_for_s=3600,
            now=self.env.chain.timestamp(),
            nonce=deposit_nonce(self.id, salt),
        )
        signed = sign_receive_authorization(self.payer, auth, TokenDomain.for_asset(self.env.asset))
        payload = self.voucher(ceiling)
        payload["type"] = "deposit"
        payload["deposit"] = {
            "amount": str(amount),
            "authorization": {
                "erc3009Authorization": {
                    "validAfter": str(auth.valid_after),
                    "validBefore": str(auth.valid_before),
                    "salt": "0x" + salt.to_bytes(32, "big").hex(),  # 32 bytes, as the wire wants
                    "signature": "0x" + signed.signature.hex(),
                }
            },
        }
        return payload

    def header(self, payload: dict[str, Any]) -> dict[str, str]:
        return {"payment-signature": _header(self.env, payload, self.authorizer)}


def _challenge(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = unb64_json(response.headers["payment-required"])
    return data


def test_refusals_corrective_402_dynamic_price_and_refund(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer = chain_env, LocalSigner.generate()
    ch = _Channel(env, authorizer)
    app = _app(env, store, channel_store, authorizer)
    p = PRICE_ATOMIC

    async def go() -> None:
        async with asgi_client(app) as http:
            offered = await http.get("/api/data")
            assert offered.status_code == 402
            schemes = [a["scheme"] for a in _challenge(offered)["accepts"]]
            assert schemes == ["exact", "batch-settlement"]

            # A voucher before any deposit: no channel.
            none = await http.get("/api/data", headers=ch.header(ch.voucher(p)))
            assert none.status_code == 402
            assert _challenge(none)["error"] == "invalid_batch_settlement_evm_channel_not_found"

            first = await http.get("/api/data", headers=ch.header(ch.deposit(100 * p, p)))
            assert first.status_code == 200, first.text
            assert env.token.balance_of(ch.payer.address) == 50_000_000 - 100 * p

            # A replayed voucher and a stale one: the corrective 402 with the state.
            for stale in (ch.voucher(p), ch.voucher(3 * p)):
                refused = await http.get("/api/data", headers=ch.header(stale))
                assert refused.status_code == 402
                challenge = _challenge(refused)
                assert (
                    challenge["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
                )
                (offer,) = [a for a in challenge["accepts"] if a["scheme"] == "batch-settlement"]
                assert offer["extra"]["channelState"]["chargedCumulativeAmount"] == str(p)
                assert offer["extra"]["voucherState"]["signedMaxClaimable"] == str(p)

            bad = [
                (ch.voucher(2 * p, key=LocalSigner.generate()), "voucher_signature"),
                (ch.voucher(101 * p), "cumulative_amount_mismatch"),
            ]
            other = _Channel(env, LocalSigner.generate())  # a wrong receiverAuthorizer
            bad_headers = [(ch.header(v), r) for v, r in bad]
            bad_headers.append((other.header(other.voucher(p)), "receiver_authorizer_mismatch"))
            moved = ch.voucher(2 * p)
            moved["voucher"]["channelId"] = "0x" + secrets.token_hex(32)
            bad_headers.append((ch.header(moved), "channel_id_mismatch"))
            for headers, reason in bad_headers:
                refused = await http.get("/api/data", headers=headers)
                assert refused.status_code == 402, refused.text
                assert _challenge(refused)["error"] == "invalid_batch_settlement_evm_" + reason

            # A handler that fails charges nothing; one that meters charges what it used.
            boom = await http.get("/api/boom", headers=ch.header(ch.voucher(2 * p)))
            assert boom.status_code == 502
            metered = await http.get("/api/metered?used=1234", headers=ch.header(ch.voucher(2 * p)))
            assert metered.status_code == 200 and CHARGE_HEADER not in metered.headers
            extra = unb64_json(metered.headers["payment-response"])["extra"]
            assert extra["chargedAmount"] == "1234"
            assert extra["channelState"]["chargedCumulativeAmount"] == str(p + 1234)

            # A cooperative refund: what was earned is claimed, the rest goes back.
            earned = p + 1234
            refund = ch.voucher(earned)
            refund["type"] = "refund"
            done = await http.get("/api/data", headers=ch.header(refund))
            assert done.status_code == 200, done.text
            assert done.json()["refunded"] == str(100 * p - earned)

    asyncio.run(go())
    escrow = ChannelEscrow(env.chain)
    assert escrow.channel(ch.id) == (earned_total := p + 1234, earned_total)
    assert env.token.balance_of(ch.payer.address) == 50_000_000 - earned_total
    (record,) = channel_store.records()
    assert record.charged == record.total_claimed == earned_total


def test_twenty_concurrent_requests_on_one_channel_are_each_charged_once(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer = chain_env, LocalSigner.generate()
    ch = _Channel(env, authorizer)
    app = _app(env, store, channel_store, authorizer)
    p, n = PRICE_ATOMIC, 20

    async def go() -> list[int]:
        async with asgi_client(app) as http:
            first = await http.get("/api/data", headers=ch.header(ch.deposit(100 * p, p)))
            assert first.status_code == 200, first.text
            replay = ch.header(ch.voucher(2 * p))

            async def once() -> int:
                return (await http.get("/api/data", headers=replay)).status_code

            # The same voucher 20 times at once: exactly one is charged and served.
            statuses = await asyncio.gather(*(once() for _ in range(n)))
            assert sorted(statuses) == [200] + [402] * (n - 1)

            # 20 distinct cumulative vouchers at once, each retried until it fits.
            async def pay(k: int) -> int:
                header = ch.header(ch.voucher((2 + k) * p))
                for _ in range(200):
                    status = (await http.get("/api/data", headers=header)).status_code
                    if status == 200:
                        return k
                    await asyncio.sleep(0.01)
                raise AssertionError(f"voucher {k} never fitted")

            return list(await asyncio.gather(*(pay(k) for k in range(1, n + 1))))

    assert sorted(asyncio.run(go())) == list(range(1, n + 1))
    (record,) = channel_store.records()
    assert record.charged == record.signed_max == (2 + n) * p
