"""Paid MCP tool calls a second on anvil: our ``PaidTools`` against the x402 SDK's MCP payment wrapper.

One anvil, one token, one payer, the same tool (``forecast(city)``, the same
price in the same token, paid with ``exact``). Each server is its own process
(this script re-invoked with ``--serve``): a FastMCP server over streamable
HTTP (stateless, JSON answers) under uvicorn on 127.0.0.1, settling before it
answers:

* ours: ``PaidTools.app()`` (behind ``HostGuard``) with the in-process
  ``LocalFacilitator`` and a SQLite payment store (nonce claims, records);
* theirs: the x402 SDK's ``create_payment_wrapper`` over an
  ``x402ResourceServer`` with the SDK's own in-process ``x402Facilitator``
  (exact EVM scheme, ``FacilitatorWeb3Signer``).

The paying client is the same for both: the SDK's ``x402MCPSession`` (an
unpaid call, the 402 result, the paid call with ``_meta["x402/payment"]``),
one MCP session per worker. Its payments are EIP-3009 authorizations signed
ahead of time by the one payer (:class:`PresignedExact`), so the numbers
measure the servers, not the client's signing. A paid call counts when its
result is the tool's output with a successful settle response; each server's
calls must move exactly ``calls × price`` to the merchant on chain, or the run
fails. Both servers run from the start and take turns, ``--rounds`` times,
alternating which goes first, so a change in a shared machine's load falls
on both; each server's CPU time over its paid calls is reported beside its
rate. The last line is one JSON object.

    python benchmarks/bench_mcp.py [--calls 120] [--concurrency 8] [--rounds 3] [--seconds-max 45]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import payloads
import servers

PRICE_ATOMIC = 10_000
MAX_TIMEOUT_S = 600  # the offer's maxTimeoutSeconds: how long a pre-signed payment stays valid
TOOL = "forecast"
OUR_RELAYER = 3
SDK_RELAYER = 4


def forecast_text(city: str) -> str:
    return f"sunny in {city}"


# ---------------------------------------------------------------- the servers


def _serve(kind: str, rpc_url: str, token: str, merchant: str, workdir: str) -> None:
    from mcp.server.fastmcp import FastMCP

    chain, asset, accounts = servers.server_chain(rpc_url, token)
    mcp = FastMCP("bench", stateless_http=True, json_response=True, log_level="WARNING")
    app: Any
    if kind == "ours":
        from farthing.paywall import LocalFacilitator, PaymentStore, PaywallOptions
        from farthing.paywall.mcp.tools import PaidTools
        from farthing.web import HostGuard

        options = PaywallOptions(
            routes=(),
            facilitator=LocalFacilitator(chain, accounts[OUR_RELAYER].signer()),
            store=PaymentStore.sqlite(Path(workdir) / "payments.sqlite"),
            pay_to=merchant,
            asset=asset,
        )
        paid = PaidTools(mcp, options=options)

        @paid.tool(PRICE_ATOMIC, description="The forecast for a city.",
                   max_timeout_seconds=MAX_TIMEOUT_S)  # fmt: skip
        async def forecast(city: str) -> str:
            return forecast_text(city)

        app = HostGuard(paid.app(), hosts=["127.0.0.1"])
    else:
        from x402 import x402Facilitator, x402ResourceServer
        from x402.mcp import create_payment_wrapper
        from x402.mechanisms.evm import FacilitatorWeb3Signer
        from x402.mechanisms.evm.exact import ExactEvmServerScheme, register_exact_evm_facilitator
        from x402.schemas import PaymentRequirements

        signer = FacilitatorWeb3Signer(
            private_key=accounts[SDK_RELAYER].private_key.get_secret_value(), rpc_url=rpc_url
        )
        facilitator = register_exact_evm_facilitator(
            x402Facilitator(), signer, networks=chain.network
        )
        server = x402ResourceServer(facilitator)
        server.register(chain.network, ExactEvmServerScheme())
        server.initialize()
        accepts = [
            PaymentRequirements(
                scheme="exact",
                network=chain.network,
                asset=asset.address,
                amount=str(PRICE_ATOMIC),
                pay_to=merchant,
                max_timeout_seconds=MAX_TIMEOUT_S,
                extra={"name": asset.name, "version": asset.version},
            )
        ]

        @mcp.tool(description="The forecast for a city.")
        @create_payment_wrapper(server, accepts=accepts)
        async def forecast(city: str) -> str:
            return forecast_text(city)

        app = mcp.streamable_http_app()
    sock, url = servers.listen()
    # The SDK's server is FastMCP's own app, whose session manager runs in its lifespan.
    servers.serve(app, sock, url, lifespan=kind != "ours")


# ---------------------------------------------------------------- the client


class PresignedExact:
    """The SDK client's ``exact`` scheme, handing out payments signed before the timed run.

    It checks each offer against the one the payments were signed for: a
    server asking for another payee, amount or token gets no payment.
    """

    scheme = "exact"

    def __init__(self, offered: dict[str, Any], payments: list[dict[str, Any]]) -> None:
        self.offered = offered
        self.payments = deque(payments)

    def create_payment_payload(self, requirements: Any) -> dict[str, Any]:
        asked = (requirements.pay_to, requirements.amount, requirements.asset)
        signed_for = (self.offered["payTo"], self.offered["amount"], self.offered["asset"])
        if asked != signed_for:
            raise RuntimeError(f"the server asked {asked}, the payments are for {signed_for}")
        return self.payments.popleft()


def presigned(offered: dict[str, Any], payer: Any, count: int) -> list[dict[str, Any]]:
    """``count`` EIP-3009 payments of the offer, each the scheme's inner payload."""
    from farthing.paywall.wire import unb64_json

    headers = payloads.exact_headers(offered, payer, count)
    return [dict(unb64_json(header)["payload"]) for header in headers]


@asynccontextmanager
async def sessions(url: str, count: int) -> AsyncIterator[list[Any]]:
    """``count`` initialized MCP sessions with the server at ``url`` (its /mcp)."""
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=60.0))
            read, write, _ = await stack.enter_async_context(
                streamable_http_client(f"{url}/mcp", http_client=http)
            )
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            opened.append(session)
        yield opened


async def offer_of(url: str) -> dict[str, Any]:
    """The ``exact`` offer of the tool's 402 result (an unpaid call)."""
    async with sessions(url, 1) as (session,):
        result = await session.call_tool(TOOL, {"city": "Lisbon"})
    assert result.isError and result.structuredContent, result
    (found,) = [a for a in result.structuredContent["accepts"] if a["scheme"] == "exact"]
    return dict(found)


@dataclass
class Side:
    """One server under test: its URL, its paying client, and what its paid calls did."""

    kind: str
    url: str
    pid: int
    scheme: PresignedExact
    client: Any = None
    cpu_s: float = 0.0
    calls: int = 0
    elapsed_s: float = 0.0
    moved: int = 0

    def per_s(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cpu_ms_per_call(self) -> float | None:
        return round(1000 * self.cpu_s / self.calls, 1) if self.calls and self.cpu_s else None


def cpu_s(pid: int) -> float:
    """The CPU seconds process ``pid`` has used (Linux's /proc; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paying_client(scheme: PresignedExact, network: str) -> Any:
    """The SDK's ``x402Client`` paying with ``scheme``, its spend controls allowing our token."""
    from x402 import x402Client

    client = x402Client()
    client.register(network, scheme)
    client.set_spend_controls(
        {"allowed_assets": [{"network": network, "asset": scheme.offered["asset"]}]}
    )
    return client


async def paid_calls(
    side: Side, opened: list[Any], calls: int, seconds_max: float
) -> tuple[int, float]:
    """``calls`` paid calls (each checked) shared by one worker a session: made, and seconds."""
    from x402.mcp import x402MCPSession

    left = calls
    done = 0

    async def worker(session: Any, n: int) -> None:
        nonlocal left, done
        paying = x402MCPSession(session, side.client)
        while left > 0 and time.perf_counter() < deadline:
            left -= 1
            city = f"city-{n}-{left}"
            result = await paying.call_tool(TOOL, {"city": city})
            text = "".join(getattr(c, "text", "") for c in result.content)
            assert result.payment_made and not result.is_error, text[:300]
            assert text == forecast_text(city), text[:300]
            settled = result.payment_response
            assert settled is not None and getattr(settled, "success", False), settled
            done += 1

    started = time.perf_counter()
    deadline = started + seconds_max
    await asyncio.gather(*(worker(s, n) for n, s in enumerate(opened)))
    return done, time.perf_counter() - started


async def measure(stage: Any, sides: list[Side], args: argparse.Namespace) -> None:
    """Both servers in turn, ``--rounds`` times (the first alternating), their calls checked."""
    network = stage.chain.network
    for side in sides:
        side.client = paying_client(side.scheme, network)
    async with AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(sessions(side.url, args.concurrency)) for side in sides
        ]
        for round_ in range(args.rounds):
            share = args.calls // args.rounds + (round_ < args.calls % args.rounds)
            order = list(zip(sides, opened, strict=True))
            for side, its_sessions in order if round_ % 2 == 0 else order[::-1]:
                before, cpu_before = stage.token.balance_of(stage.merchant), cpu_s(side.pid)
                done, elapsed = await paid_calls(
                    side, its_sessions, share, args.seconds_max / args.rounds
                )
                side.cpu_s += cpu_s(side.pid) - cpu_before
                side.moved += stage.token.balance_of(stage.merchant) - before
                side.calls += done
                side.elapsed_s += elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The last stdout line is one JSON object; progress goes to stderr.",
    )
    parser.add_argument("--calls", type=int, default=120, help="paid calls per server")
    parser.add_argument("--concurrency", type=int, default=8, help="workers, one MCP session each")
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns each server takes, alternating who goes first"
    )
    parser.add_argument(
        "--seconds-max", type=float, default=45.0, help="time limit of each server's paid calls"
    )
    args = parser.parse_args()
    if min(args.calls, args.concurrency, args.rounds) < 1 or args.seconds_max <= 0:
        parser.error("--calls, --concurrency and --rounds must be at least 1, --seconds-max > 0")
    if args.rounds > args.calls:
        parser.error("--rounds cannot exceed --calls")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    funds = 2 * args.calls * PRICE_ATOMIC
    with servers.anvil_stage("bench-mcp-", payer_funds=funds, channels=False) as stage:
        kinds = ("ours", "x402_sdk")

        def start(kind: str) -> tuple[Any, dict[str, Any]]:
            return servers.start_server(
                __file__, "--serve", kind, stage.rpc_url, stage.asset.address, stage.merchant,
                stage.workdir, log=Path(stage.workdir) / f"{kind}.log",
            )  # fmt: skip

        # Both start at once (each is a fresh interpreter importing for seconds).
        with ThreadPoolExecutor(len(kinds)) as pool:
            starting = [pool.submit(start, kind) for kind in kinds]
        processes = [f.result()[0] for f in starting if f.exception() is None]
        try:
            sides = []
            for kind, future in zip(kinds, starting, strict=True):
                ready = future.result()[1]
                url = str(ready["url"])
                offered = asyncio.run(offer_of(url))
                payments = presigned(offered, stage.payer, args.calls)
                sides.append(Side(kind, url, int(ready["pid"]), PresignedExact(offered, payments)))
            asyncio.run(measure(stage, sides, args))
        finally:
            for process in processes:
                servers.stop_server(process)
    for side in sides:
        say(f"{side.kind}: {side.calls} paid calls, {side.per_s():.1f}/s, "
            f"{side.moved} atomic units settled, server CPU {side.cpu_ms_per_call()} ms a call")  # fmt: skip
        if side.moved != side.calls * PRICE_ATOMIC:
            raise SystemExit(f"{side.kind}: {side.calls} paid calls moved {side.moved} on chain")
    ours, theirs = sides
    if not (ours.calls and theirs.calls):
        raise SystemExit("a server made no paid call within --seconds-max: no rate to compare")
    report = {
        "bench": "mcp",
        "ours_per_s": round(ours.per_s(), 1),
        "x402_sdk_per_s": round(theirs.per_s(), 1),
        "ratio_vs_x402_sdk": round(ours.per_s() / theirs.per_s(), 2),
        "ours_calls": ours.calls,
        "x402_sdk_calls": theirs.calls,
        "ours_settled_atomic": ours.moved,
        "x402_sdk_settled_atomic": theirs.moved,
        "ours_cpu_ms_per_call": ours.cpu_ms_per_call(),
        "x402_sdk_cpu_ms_per_call": theirs.cpu_ms_per_call(),
        "price_atomic": PRICE_ATOMIC,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "scheme": "exact",
    }
    print(json.dumps(report))


if __name__ == "__main__":
    servers.serve_or_run(main, _serve)
