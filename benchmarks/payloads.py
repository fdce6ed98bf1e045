"""What the benchmark clients send, signed ahead, and the load that sends it.

Payment headers are signed before the timed run, so the numbers measure the
servers, not the client's signing: :func:`exact_headers` (EIP-3009 payments)
and :func:`channel_headers` (one new channel: a deposit with the first
voucher, then cumulative vouchers, as the x402 spec's wire payloads).
:func:`offer` reads a 402's offer of one scheme. :func:`unpaid_per_s` and
:func:`paid_per_s` are the two loads (:func:`add_load_arguments` their knobs): 402 challenges for a while, and paid
requests, each lane's headers in order (a channel's vouchers must be).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any

import httpx


def offer(url: str, scheme: str) -> dict[str, Any]:
    """The one offer of ``scheme`` in the 402 that ``url`` answers."""
    from farthing.paywall.wire import unb64_json

    challenge = httpx.get(url, timeout=30.0)
    assert challenge.status_code == 402, challenge.status_code
    accepts = unb64_json(challenge.headers["payment-required"])["accepts"]
    (found,) = [a for a in accepts if a["scheme"] == scheme]
    return dict(found)


def exact_headers(
    offered: dict[str, Any], payer: Any, count: int, *, valid_for_s: int | None = None
) -> list[str]:
    """``count`` EIP-3009 payments of the offer (valid for its maxTimeoutSeconds by default)."""
    from farthing.paywall.wire import PaymentPayload, PaymentRequirements, encode_payment_signature
    from farthing.wallet.eip3009 import build_authorization, sign_authorization

    requirements = PaymentRequirements.from_wire(offered)
    out = []
    for _ in range(count):
        auth = build_authorization(
            from_address=payer.address,
            to=requirements.pay_to,
            value=requirements.amount,
            valid_for_s=valid_for_s or requirements.max_timeout_seconds,
        )
        signed = sign_authorization(payer, auth, requirements.domain())
        payload = PaymentPayload(
            accepted=requirements, authorization=auth, signature=signed.signature
        )
        out.append(encode_payment_signature(payload))
    return out


def channel_headers(
    chain: Any,
    asset: Any,
    offered: dict[str, Any],
    payer: Any,
    count: int,
    *,
    deposit_valid_for_s: int,
) -> list[str]:
    """One new channel: a deposit covering ``count`` requests with the first voucher, then vouchers."""
    from farthing.paywall.schemes.batch_settlement.vouchers import (
        ChannelConfig,
        ChannelDomain,
        deposit_nonce,
        sign_voucher,
    )
    from farthing.paywall.wire import b64_json
    from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
    from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS

    price, extra = int(offered["amount"]), offered["extra"]
    domain = ChannelDomain(chain.chain_id)
    config = ChannelConfig(
        payer=payer.address,
        payer_authorizer=payer.address,
        receiver=offered["payTo"],
        receiver_authorizer=extra["receiverAuthorizer"],
        token=offered["asset"],
        withdraw_delay_s=int(extra["withdrawDelay"]),
        salt=secrets.token_bytes(32),
    )
    channel_id = domain.channel_id(config)
    config_wire = config.to_wire()
    headers = []
    for n in range(1, count + 1):
        voucher = sign_voucher(payer, domain, channel_id, n * price)
        payload: dict[str, Any] = {
            "type": "voucher",
            "channelConfig": config_wire,
            "voucher": voucher.to_wire(),
        }
        if n == 1:
            salt = secrets.randbits(256)
            auth = build_authorization(
                from_address=payer.address,
                to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
                value=count * price,
                valid_for_s=deposit_valid_for_s,
                now=chain.timestamp(),
                nonce=deposit_nonce(channel_id, salt),
            )
            signed = sign_receive_authorization(payer, auth, TokenDomain.for_asset(asset))
            payload["type"] = "deposit"
            payload["deposit"] = {
                "amount": str(count * price),
                "authorization": {
                    "erc3009Authorization": {
                        "validAfter": str(auth.valid_after),
                        "validBefore": str(auth.valid_before),
                        "salt": "0x" + salt.to_bytes(32, "big").hex(),
                        "signature": "0x" + signed.signature.hex(),
                    }
                },
            }
        # Compact JSON, as every x402 client encodes the header (ours and the SDK's).
        headers.append(b64_json({"x402Version": 2, "payload": payload, "accepted": offered}))
    return headers


# ---------------------------------------------------------------- the load


def add_load_arguments(
    parser: argparse.ArgumentParser, *, concurrency_help: str, paid_seconds_max: float
) -> None:
    """The loads' knobs: workers, the unpaid phase's length, the paid phases' time limit."""
    parser.add_argument("--concurrency", type=int, default=8, help=concurrency_help)
    parser.add_argument("--seconds", type=float, default=3.0, help="unpaid phase length")
    parser.add_argument("--paid-seconds-max", type=float, default=paid_seconds_max)


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


async def unpaid_per_s(url: str, seconds: float, concurrency: int) -> float:
    """402 challenges a second on ``url`` for ``seconds``, ``concurrency`` workers."""
    done = 0
    deadline = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.get(url)
            assert response.status_code == 402, response.status_code
            done += 1

    # The window opens once the client is built (its TLS set-up alone can take
    # longer than a short window on a loaded machine).
    async with httpx.AsyncClient(timeout=30.0, limits=_limits(concurrency)) as client:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def paid_per_s(url: str, lanes: list[list[str]], seconds_max: float) -> float:
    """Paid requests a second: each lane's headers in order, the lanes side by side."""
    done = 0
    deadline = 0.0

    async def worker(client: httpx.AsyncClient, lane: list[str]) -> None:
        nonlocal done
        for header in lane:
            if time.perf_counter() >= deadline:
                return
            response = await client.get(url, headers={"PAYMENT-SIGNATURE": header})
            assert response.status_code == 200, (response.status_code, response.text[:300])
            done += 1

    async with httpx.AsyncClient(timeout=60.0, limits=_limits(len(lanes))) as client:
        started = time.perf_counter()
        deadline = started + seconds_max
        await asyncio.gather(*(worker(client, lane) for lane in lanes))
        return done / (time.perf_counter() - started)
