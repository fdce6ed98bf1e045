"""``bench_inference``'s streamed metered chat: time to first token, paid through a channel, and the charge's exactness.

Every event crosses a real socket (``httpx.ASGITransport`` would hand over a
whole answer at once). The upstream is a real vLLM given by URL, or
:func:`stub_stream_app` (vLLM's streaming routes with a fixed first token
delay) under uvicorn in a thread of this process. The paid gateway runs as a
process of its own, as it is deployed (``bench_inference.py --serve
stream-gateway …``, :func:`serve_gateway`): sharing this process's GIL with
the client would charge the gateway for the client's work. It sells through
``batch-settlement`` on anvil (our token, our escrow at the canonical
addresses, a SQLite channel store in the run's folder, the local facilitator).

One buyer deposits once (during the warm-up), then each measured call is a
402 for a distinct request (its own quote), then the paid stream with a
voucher for ``charged so far + the quote``. The direct call is the same
request sent straight to the upstream; the two alternate, one each, so both
see the same machine. Time to first token is from sending the request to
the first event carrying text. Exactness: each call's charge (the final
event) against the price of vLLM's own ``usage`` at the quoted price per 1k,
the channel row's ``charged`` (read from the gateway's channel store once it
stopped) against their sum, and the merchant's balance after the claim
against it too; every difference is added up in atomic units.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from farthing.inference import Gateway, GatewayPayment, InferenceSettings
from farthing.inference.pricing import call_price_atomic
from farthing.inference.streaming import PAYMENT_EVENT, SseReader
from farthing.paywall import LocalFacilitator, PaymentStore
from farthing.paywall.schemes.batch_settlement.claims import ChannelClaimer
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    deposit_nonce,
    sign_voucher,
)
from farthing.paywall.wire import b64_json, unb64_json
from farthing.wallet.eip3009 import TokenDomain, build_authorization, sign_receive_authorization
from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin

STUB_MODEL = "stub"
MAX_TOKENS = 16
WITHDRAW_DELAY_S = 900
_METRICS = (
    'vllm:prompt_tokens_total{model_name="stub"} 0.0\n'
    'vllm:generation_tokens_total{model_name="stub"} 0.0\n'
    'vllm:num_requests_waiting{model_name="stub"} 0.0\n'
)


def stub_stream_app(first_token_s: float, token_s: float) -> Starlette:
    """vLLM's routes, streaming ``MAX_TOKENS`` one-token events after ``first_token_s``."""

    def tokens(body: dict[str, Any]) -> int:
        return 3 + sum(len(str(m.get("content", ""))) for m in body["messages"])

    async def models(request: Request) -> Response:
        return JSONResponse({"data": [{"id": STUB_MODEL, "max_model_len": 4096}]})

    async def tokenize(request: Request) -> Response:
        return JSONResponse({"count": tokens(await request.json()), "max_model_len": 4096})

    async def chat(request: Request) -> Response:
        body = await request.json()
        prompt, limit = tokens(body), body.get("max_tokens") or MAX_TOKENS
        options = body.get("stream_options") or {}

        def event(choices: list[Any], completion: int | None) -> bytes:
            chunk: dict[str, Any] = {"id": "stub", "object": "chat.completion.chunk",
                                     "created": 1, "model": STUB_MODEL, "choices": choices}  # fmt: skip
            if completion is not None and options.get("continuous_usage_stats"):
                chunk["usage"] = _usage(prompt, completion)
            return f"data: {json.dumps(chunk)}\n\n".encode()

        async def stream() -> AsyncIterator[bytes]:
            await anyio.sleep(first_token_s)  # the prefill
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}}], 0)
            for n in range(1, limit + 1):
                if n > 1:
                    await anyio.sleep(token_s)
                yield event([{"index": 0, "delta": {"content": "tok "}}], n)
            yield event([{"index": 0, "delta": {}, "finish_reason": "length"}], limit)
            if options.get("include_usage"):
                usage = {"id": "stub", "object": "chat.completion.chunk", "created": 1,
                         "model": STUB_MODEL, "choices": [], "usage": _usage(prompt, limit)}  # fmt: skip
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(_METRICS)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/metrics", metrics),
            Route("/health", health),
        ]
    )


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn on 127.0.0.1 in a thread; its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("a benchmark server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Seller:
    """The buyer's channel to the paid gateway on anvil, and what the seller's side needs to check it."""

    chain: Any  # the benchmark's RpcChain to anvil
    domain: ChannelDomain
    authorizer: LocalSigner
    payer: LocalSigner
    token: Stablecoin
    merchant: str
    config: ChannelConfig
    asset: Any
    workdir: Path
    deposited: bool = False

    @property
    def channel_id(self) -> bytes:
        return self.domain.channel_id(self.config)

    def payload(self, cumulative: int) -> dict[str, Any]:
        signed = sign_voucher(self.payer, self.domain, self.channel_id, cumulative)
        out: dict[str, Any] = {"type": "voucher", "channelConfig": self.config.to_wire(),
                               "voucher": signed.to_wire()}  # fmt: skip
        if self.deposited:
            return out
        self.deposited = True
        salt = secrets.randbits(256)
        auth = build_authorization(
            from_address=self.payer.address,
            to=CANONICAL_CHANNEL_CONTRACTS.erc3009_collector,
            value=10**9,
            valid_for_s=3600,
            now=self.chain.timestamp(),
            nonce=deposit_nonce(self.channel_id, salt),
        )
        signature = sign_receive_authorization(self.payer, auth, TokenDomain.for_asset(self.asset))
        erc3009 = {"validAfter": str(auth.valid_after), "validBefore": str(auth.valid_before),
                   "salt": "0x" + salt.to_bytes(32, "big").hex(),
                   "signature": "0x" + signature.signature.hex()}  # fmt: skip
        out["type"] = "deposit"
        out["deposit"] = {"amount": str(10**9), "authorization": {"erc3009Authorization": erc3009}}
        return out


def seller(stage: Any) -> Seller:
    """The buyer (the stage's funded payer) and its channel's terms; the authorizer's key in the run's folder."""
    workdir = Path(stage.workdir)
    authorizer = LocalSigner.generate()
    key_file = workdir / "authorizer.key"
    key_file.write_text(authorizer.private_key.get_secret_value() + "\n")
    os.chmod(key_file, 0o600)
    config = ChannelConfig(
        payer=stage.payer.address, payer_authorizer=stage.payer.address, receiver=stage.merchant,
        receiver_authorizer=authorizer.address, token=stage.asset.address,
        withdraw_delay_s=WITHDRAW_DELAY_S, salt=secrets.token_bytes(32),
    )  # fmt: skip
    return Seller(stage.chain, ChannelDomain(stage.chain.chain_id), authorizer, stage.payer,
                  stage.token, stage.merchant, config, stage.asset, workdir)  # fmt: skip


def _channel_store(chain: Any, workdir: Path) -> ChannelStore:
    return ChannelStore(
        f"sqlite:///{workdir / 'channels.sqlite'}",
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )


def serve_gateway(rpc_url: str, token: str, merchant: str, workdir: str, upstream_url: str) -> None:
    """In the gateway's own process: the paid gateway on anvil, serving until stopped."""
    import servers

    from farthing.paywall.keys import load_key_file

    chain, asset, accounts = servers.server_chain(rpc_url, token)
    folder = Path(workdir)
    authorizer = load_key_file(folder / "authorizer.key")
    settings = InferenceSettings(
        upstream_url=upstream_url,
        upstream_timeout_s=120.0,
        metrics_refresh_s=1.0,
        max_tokens_max=64,
        max_tokens_default=MAX_TOKENS,
    )
    payment = GatewayPayment(
        facilitator=LocalFacilitator(chain, accounts[1].signer()),
        store=PaymentStore.sqlite(folder / "payments.sqlite"),
        asset=asset,
        pay_to=merchant,
        channels=ChannelOptions(
            _channel_store(chain, folder),
            authorizer,
            withdraw_delay_s=WITHDRAW_DELAY_S,
            claim_in_background=False,
        ),
    )
    sock, url = servers.listen()
    servers.serve(Gateway(settings, payment=payment), sock, url)


@dataclass
class Streamed:
    ttft_s: float
    headers: dict[str, str]
    events: list[tuple[str | None, str]] = field(default_factory=list)


async def stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> Streamed:
    """One streamed request; the time to the first event with text, and every event."""
    reader, first = SseReader(), None
    events: list[tuple[str | None, str]] = []
    started = time.perf_counter()
    async with client.stream("POST", url, json=body, headers=headers) as answer:
        async for chunk in answer.aiter_raw():
            for event in reader.feed(chunk):
                events.append((event.name, event.data))
                if first is None and event.name is None and _has_text(event.data):
                    first = time.perf_counter() - started
        status, got = answer.status_code, dict(answer.headers)
    if status != 200 or first is None:
        raise SystemExit(f"a streamed call answered HTTP {status} without text: {events[:2]}")
    return Streamed(first, got, events)


def _has_text(data: str) -> bool:
    if data == "[DONE]":
        return False
    choices = json.loads(data).get("choices") or []
    return any((c.get("delta") or {}).get("content") for c in choices)


def _body(model: str, index: int, tag: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"Tell the farthing's story ({tag} {index})."}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def _paid(
    client: httpx.AsyncClient, world: Seller, gateway: str, body: dict[str, Any], charged: int
) -> tuple[Streamed, int, int, int]:
    """A 402 then the paid stream: the result, its charge, the exact price and the new total."""
    challenge = await client.post(f"{gateway}/v1/chat/completions", json=body)
    if challenge.status_code != 402:
        raise SystemExit(f"the gateway answered {challenge.status_code}, not 402")
    (offer,) = unb64_json(challenge.headers["payment-required"])["accepts"]
    ceiling = int(offer["amount"])
    payload = {"x402Version": 2, "payload": world.payload(charged + ceiling), "accepted": offer}
    headers = {"payment-signature": b64_json(payload)}
    result = await stream(client, f"{gateway}/v1/chat/completions", body, headers)
    (receipt,) = [json.loads(d) for n, d in result.events if n == PAYMENT_EVENT]
    charge = int(receipt["payment_response"]["extra"]["chargedAmount"])
    usage = next(json.loads(d)["usage"] for n, d in reversed(result.events)
                 if n is None and d != "[DONE]" and json.loads(d).get("usage"))  # fmt: skip
    per_1k = int(result.headers["x-farthing-price-per-1k-atomic"])
    exact = min(ceiling, call_price_atomic(usage["prompt_tokens"] + usage["completion_tokens"],
                                           per_1k))  # fmt: skip
    state = receipt["payment_response"]["extra"]["channelState"]
    return result, charge, exact, int(state["chargedCumulativeAmount"])


async def measure_stream(
    script: str, upstream_url: str | None, model: str, calls: int, first_token_s: float,
    token_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Start anvil, the stand-in upstream (unless a real one is given) and the gateway process; measure."""
    import servers

    with servers.anvil_stage("bench-stream-", payer_funds=2 * 10**9, channels=True) as stage:
        world = seller(stage)
        stub = stub_stream_app(first_token_s, token_s)
        with serving(stub) as stub_url:
            upstream = upstream_url or stub_url
            process, ready = servers.start_server(
                script, "--serve", "stream-gateway", stage.rpc_url, stage.asset.address,
                stage.merchant, stage.workdir, upstream,
                log=Path(stage.workdir) / "gateway.log",
            )  # fmt: skip
            try:
                report = await _run(world, upstream.rstrip("/").removesuffix("/v1"),
                                    str(ready["url"]), model, calls)  # fmt: skip
            finally:
                servers.stop_server(process)
        return await _settle(world, report)


async def _run(
    world: Seller, upstream: str, gateway: str, model: str, calls: int
) -> dict[str, Any]:
    timeout = httpx.Timeout(120.0, connect=5.0)
    direct_s, paid_s, errors, charges = [], [], 0, 0
    async with httpx.AsyncClient(timeout=timeout) as client:
        charged = 0
        for index in range(-3, calls):  # three warm-up rounds, the deposit among them
            tag = "warm" if index < 0 else "run"
            direct = await stream(client, f"{upstream}/v1/chat/completions",
                                  _body(model, index, f"direct-{tag}"), {})  # fmt: skip
            result, charge, exact, charged = await _paid(
                client, world, gateway, _body(model, index, f"paid-{tag}"), charged
            )
            errors += abs(charge - exact)
            charges += charge
            if index >= 0:
                direct_s.append(direct.ttft_s)
                paid_s.append(result.ttft_s)
    direct_ms = statistics.median(direct_s) * 1000
    paid_ms = statistics.median(paid_s) * 1000
    return {
        "stream_calls": calls,
        "stream_ttft_direct_ms": round(direct_ms, 3),
        "stream_ttft_gateway_ms": round(paid_ms, 3),
        "stream_ttft_ratio": round(paid_ms / direct_ms, 3),
        "stream_charged_atomic": charges,
        "stream_charge_error_atomic": errors,
    }


async def _settle(world: Seller, report: dict[str, Any]) -> dict[str, Any]:
    """With the gateway stopped: its channel row and the claim's settlement against the charges."""
    charges, errors = report["stream_charged_atomic"], report["stream_charge_error_atomic"]
    store = _channel_store(world.chain, world.workdir)
    try:
        record = store.get(world.channel_id)
        errors += abs((0 if record is None else record.charged) - charges)
        relayer = world.chain.dev_accounts()[2].signer()
        claimer = ChannelClaimer(store, LocalFacilitator(world.chain, relayer), world.authorizer)
        claimed = await claimer.tick(force=True)
        if claimed.failures:
            raise SystemExit(f"the claim failed: {claimed.failures}")
    finally:
        store.dispose()
    errors += abs(world.token.balance_of(world.merchant) - charges)
    return {**report, "stream_charge_error_atomic": errors}
