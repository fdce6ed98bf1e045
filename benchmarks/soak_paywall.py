"""Soak: a paywall under hours' worth of mixed traffic keeps its memory, its speed and its sign-ins.

One anvil, our token and our channel contracts; the paywall is its own
process (this script re-invoked with ``--serve``) under uvicorn on
127.0.0.1: ``PaywallMiddleware`` with receipts, x402 sign-in-with-x on its
configured public URL, a SQLite payment database shared by payments, channels
and spent sign-in nonces, behind ``HostGuard``, in front of a small site with
an article (whose ``<head>`` carries SEO metadata) and an API route sold by
``exact`` and ``batch-settlement``.

Before the timed run one payer buys the article (one settlement on anvil) and
each worker's channel vouchers are signed ahead (the first carries the
deposit). Then ``--concurrency`` workers send ``--requests`` requests in all
(stopping early at ``--seconds-max``), each drawn from a seeded mix:

* unpaid API calls (JSON 402) and unpaid article reads, for x402 clients (JSON
  402 with a preview) and for browsers (the HTML 402 page);
* voucher-paid API calls, in order on each worker's own channel (200; signing
  takes a few ms each, so ``--vouchers-per-worker`` can cap what is signed
  ahead, and draws past it go out unpaid, counted as ``vouchers_exhausted``);
* sign-ins by the payer: a fresh challenge, signed, sent (200; anything else
  is a *valid sign-in refused*), and by strangers who never paid (402);
* malformed input: junk and oversized payment headers, junk sign-ins, a forged
  ``Host`` (421), an encoded dot segment (400).

Every minute (``--window-s``) the rate of finished requests is recorded (and
printed on stderr as progress), and the server's resident memory is sampled
every second from ``/proc``. The last
stdout line is one JSON object: ``rss_growth_pct`` (the server's RSS at the end
against its RSS after the first window; goal ≤ 5), ``slowest_vs_first`` (the
slowest full window's rate against the first's; goal ≥ 0.8), ``status_5xx``
(goal 0) and ``valid_sign_ins_refused`` (goal 0), with the counts behind them.
The exit status is 1 when a 5xx or a refused valid sign-in was seen.

    nice python benchmarks/soak_paywall.py [--requests 500000] [--concurrency 8]
        [--window-s 60] [--seconds-max 3600] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import httpx
import payloads
import servers

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PRICE_ATOMIC: Final = 1_000
WITHDRAW_DELAY_S: Final = 900
DEPOSIT_VALID_FOR_S: Final = 7 * 24 * 3600
RELAYER: Final = 3
RECEIVER_AUTHORIZER: Final = 5
BOUGHT: Final = "/articles/bought"
OTHER: Final = "/articles/other"
API: Final = "/api/data"
SECRET_TEXT: Final = "Sk9-Wq3xRv7Lt1Pm5Yb8Hc2Jd6Fn4Gz0Ea-Uo"
# The mix, in requests: kind and weight (a sign-in is two requests: challenge, then sign-in).
MIX: Final = (
    ("api_402", 26),
    ("article_json_402", 14),
    ("article_page_402", 14),
    ("voucher", 4),
    ("payer_sign_in", 8),
    ("stranger_sign_in", 8),
    ("malformed", 20),
    ("free", 6),
)
ARTICLE_HTML: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>The farthing</title>
<meta name="description" content="The farthing was a quarter of a penny.">
<meta property="og:description" content="PAID-PART: collectors still trade them, a few pence each.">
<script type="application/ld+json">{"@type": "NewsArticle", "headline": "The farthing",
"articleBody": "The farthing was a quarter of a penny. PAID-PART: collectors still trade them."}</script>
</head><body><article><h1>The farthing</h1>
<p>The farthing was a quarter of a penny, the smallest coin in common use.</p>
<p>It was minted in silver first and in copper later, for centuries on end.</p>
<p>PAID-PART: the coin stopped being legal tender at the end of 1960.</p>
<p>PAID-PART: collectors still trade them, a few pence each, at fairs.</p>
</article></body></html>"""


# ---------------------------------------------------------------- the server


def _serve(rpc_url: str, token: str, merchant: str, workdir: str) -> None:
    from pydantic import SecretStr
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from farthing.paywall import (
        LocalFacilitator,
        PaidRoute,
        PaymentStore,
        PaywallMiddleware,
        PaywallOptions,
    )
    from farthing.paywall.edge.receipts import Receipts
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
    from farthing.web import HostGuard, allowed_hosts

    chain, asset, accounts = servers.server_chain(rpc_url, token)
    database = f"sqlite:///{Path(workdir) / 'payments.sqlite'}"

    async def article(request: Any) -> HTMLResponse:
        return HTMLResponse(ARTICLE_HTML)

    async def data(request: Any) -> JSONResponse:
        return JSONResponse({"data": "PAID-PART api"})

    async def free(request: Any) -> PlainTextResponse:
        return PlainTextResponse("free")

    site = Starlette(
        routes=[
            Route("/articles/{slug}", article),
            Route(API, data),
            Route("/free", free),
        ]
    )
    sock, public_url = servers.listen()
    channels = ChannelOptions(
        servers.channel_store(chain, database),
        accounts[RECEIVER_AUTHORIZER].signer(),
        withdraw_delay_s=WITHDRAW_DELAY_S,
        claim_in_background=False,
    )
    paywall = PaywallMiddleware(
        site,
        options=PaywallOptions(
            routes=[
                PaidRoute(
                    "/articles/*",
                    PRICE_ATOMIC,
                    mime_type="text/html",
                    preview_fraction=Decimal("0.4"),
                ),
                PaidRoute(API, PRICE_ATOMIC, schemes=("exact", "batch-settlement")),
            ],
            facilitator=LocalFacilitator(chain, accounts[RELAYER].signer()),
            store=PaymentStore(database),
            pay_to=merchant,
            asset=asset,
            public_url=public_url,
            receipts=Receipts(SecretStr(SECRET_TEXT)),
            channels=channels,
        ),
    )
    app = HostGuard(paywall, hosts=allowed_hosts(sock.getsockname()[0], [public_url]))
    servers.serve(app, sock, public_url)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- the client's payloads


def _buy(url: str, payer: Any) -> None:
    """One real payment for the article, so the payer's sign-ins open it."""
    (header,) = payloads.exact_headers(payloads.offer(url, "exact"), payer, 1, valid_for_s=120)
    answer = httpx.get(url, headers={"PAYMENT-SIGNATURE": header}, timeout=60.0)
    if answer.status_code != 200:
        raise RuntimeError(f"buying the article failed: {answer.status_code} {answer.text[:200]}")


def _sign_in(info: dict[str, Any], signer: Any, network: str) -> str:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from farthing.paywall.edge.sign_in import siwe_message

    payload = {**info, "address": signer.address, "chainId": network, "type": "eip191"}
    key = signer.private_key.get_secret_value()
    signature = Account.sign_message(encode_defunct(text=siwe_message(payload)), key).signature
    payload["signature"] = "0x" + signature.hex()
    return base64.b64encode(json.dumps(payload).encode()).decode()


# ---------------------------------------------------------------- the load


@dataclass
class Tally:
    """What the workers saw; the windows are filled by the clock, not by the workers."""

    started: float = field(default_factory=time.monotonic)
    done: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    status_5xx: int = 0
    valid_sign_ins_refused: int = 0
    sign_ins_ok: int = 0
    stranger_sign_ins: int = 0
    strangers_let_in: int = 0
    vouchers_paid: int = 0
    vouchers_refused: int = 0
    vouchers_exhausted: int = 0  # voucher draws sent unpaid: the worker's lane was used up
    unexpected: Counter[str] = field(default_factory=Counter)

    def saw(self, kind: str, status: int, expected: tuple[int, ...]) -> None:
        self.done += 1
        self.statuses[f"{kind}:{status}"] += 1
        if status >= 500:
            self.status_5xx += 1
        if status not in expected:
            self.unexpected[f"{kind}:{status}"] += 1


@dataclass
class Plan:
    url: str
    network: str
    strangers: list[Any]
    payer: Any
    lanes: list[list[str]]
    requests: int
    deadline: float
    seed: int


async def _worker(index: int, plan: Plan, tally: Tally) -> None:
    rng = random.Random(f"{plan.seed}/{index}")
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    lane = plan.lanes[index]
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with httpx.AsyncClient(base_url=plan.url, timeout=60.0, limits=limits) as client:
        while tally.done < plan.requests and time.monotonic() < plan.deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind == "voucher" and not lane:
                tally.vouchers_exhausted += 1
                kind = "api_402"
            try:
                await _one(client, kind, rng, plan, lane, tally)
            except httpx.HTTPError as exc:
                tally.done += 1
                tally.unexpected[f"{kind}:{type(exc).__name__}"] += 1
            client.cookies.clear()  # each request is a new reader: no receipt carries over


async def _one(
    client: httpx.AsyncClient,
    kind: str,
    rng: random.Random,
    plan: Plan,
    lane: list[str],
    tally: Tally,
) -> None:
    if kind == "api_402":
        answer = await client.get(API)
        tally.saw(kind, answer.status_code, (402,))
    elif kind == "article_json_402":
        answer = await client.get(OTHER)
        tally.saw(kind, answer.status_code, (402,))
    elif kind == "article_page_402":
        answer = await client.get(OTHER, headers={"Accept": "text/html,*/*;q=0.8"})
        tally.saw(kind, answer.status_code, (402,))
    elif kind == "free":
        answer = await client.get("/free")
        tally.saw(kind, answer.status_code, (200,))
    elif kind == "voucher":
        answer = await client.get(API, headers={"PAYMENT-SIGNATURE": lane.pop(0)})
        tally.saw(kind, answer.status_code, (200,))
        if answer.status_code == 200:
            tally.vouchers_paid += 1
        else:
            tally.vouchers_refused += 1
    elif kind in ("payer_sign_in", "stranger_sign_in"):
        challenge = await client.get(BOUGHT)
        tally.saw(kind + "_challenge", challenge.status_code, (402,))
        if challenge.status_code != 402:
            return
        from farthing.paywall.wire import unb64_json

        info = unb64_json(challenge.headers["payment-required"])["extensions"]["sign-in-with-x"]
        signer = plan.payer if kind == "payer_sign_in" else rng.choice(plan.strangers)
        header = _sign_in(info["info"], signer, plan.network)
        answer = await client.get(BOUGHT, headers={"SIGN-IN-WITH-X": header})
        if kind == "payer_sign_in":
            tally.saw(kind, answer.status_code, (200,))
            if answer.status_code == 200:
                tally.sign_ins_ok += 1
            else:
                tally.valid_sign_ins_refused += 1
        else:
            tally.saw(kind, answer.status_code, (402,))
            tally.stranger_sign_ins += 1
            if answer.status_code == 200:
                tally.strangers_let_in += 1
    else:
        await _malformed(client, rng, tally)


async def _malformed(client: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    choice = rng.randrange(6)
    if choice == 0:
        answer = await client.get(API, headers={"PAYMENT-SIGNATURE": "not base64 !!"})
        tally.saw("junk_payment", answer.status_code, (400,))
    elif choice == 1:
        junk = base64.b64encode(b'{"x402Version": 2, "payload": [1, {"a": null}]}').decode()
        answer = await client.get(API, headers={"PAYMENT-SIGNATURE": junk})
        tally.saw("wrong_shape_payment", answer.status_code, (400,))
    elif choice == 2:
        answer = await client.get(API, headers={"PAYMENT-SIGNATURE": "A" * 9000})
        tally.saw("oversized_payment", answer.status_code, (400,))
    elif choice == 3:
        header = base64.b64encode(b"[" * 3000 + b"]" * 3000).decode()[:8000]
        answer = await client.get(BOUGHT, headers={"SIGN-IN-WITH-X": header})
        tally.saw("junk_sign_in", answer.status_code, (402,))
    elif choice == 4:
        answer = await client.get(BOUGHT, headers={"Host": "evil.example"})
        tally.saw("forged_host", answer.status_code, (421,))
    else:
        answer = await client.get("/articles/%2e%2e/api/data")
        tally.saw("encoded_dot", answer.status_code, (400,))


def _watch(pid: int, tally: Tally, window_s: float, stop: threading.Event) -> dict[str, Any]:
    """Sample the server's RSS every second and the finished count at each window's end."""
    seen: dict[str, Any] = {"rss_kib": [], "window_counts": [], "rss_after_first_kib": None}
    next_window = tally.started + window_s
    last_done = 0

    def loop() -> None:
        nonlocal next_window, last_done
        while not stop.wait(1.0):
            rss = _rss_kib(pid)
            seen["rss_kib"].append(rss)
            if time.monotonic() >= next_window:
                seen["window_counts"].append(tally.done - last_done)
                print(
                    f"window {len(seen['window_counts'])}: "
                    f"{(tally.done - last_done) / window_s:.1f}/s, {tally.done} done, "
                    f"server RSS {rss / 1024:.1f} MiB, 5xx {tally.status_5xx}, "
                    f"valid sign-ins refused {tally.valid_sign_ins_refused}",
                    file=sys.stderr,
                    flush=True,
                )
                last_done = tally.done
                next_window += window_s
                if seen["rss_after_first_kib"] is None:
                    seen["rss_after_first_kib"] = rss

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    seen["thread"] = thread
    return seen


async def _load(plan: Plan, tally: Tally, concurrency: int) -> None:
    await asyncio.gather(*(_worker(n, plan, tally) for n in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500_000, help="requests in all")
    parser.add_argument("--concurrency", type=int, default=8, help="workers")
    parser.add_argument("--window-s", type=float, default=60.0, help="rate and RSS window")
    parser.add_argument("--seconds-max", type=float, default=3600.0, help="stop after this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--vouchers-per-worker",
        type=int,
        default=0,
        help="vouchers signed ahead per worker (0: enough for the mix at --requests)",
    )
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.window_s <= 0 or args.seconds_max <= 0:
        parser.error("--requests, --concurrency, --window-s and --seconds-max must be positive")

    from farthing.wallet.signer import LocalSigner

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    voucher_share = dict(MIX)["voucher"] / sum(w for _, w in MIX)
    per_lane = args.vouchers_per_worker or max(
        2, int(args.requests * voucher_share * 1.3 / args.concurrency) + 2
    )
    with servers.anvil_stage("soak-paywall-", payer_funds=10**14, channels=True) as stage:
        chain, asset, payer = stage.chain, stage.asset, stage.payer
        process, ready = servers.start_server(
            __file__,
            "--serve",
            stage.rpc_url,
            asset.address,
            stage.merchant,
            stage.workdir,
            log=None,
        )
        url, pid = str(ready["url"]), int(ready["pid"])
        try:
            _buy(f"{url}{BOUGHT}", payer)
            offered = payloads.offer(f"{url}{API}", "batch-settlement")
            say(f"signing {per_lane * args.concurrency} vouchers ahead ...")
            lanes = [
                payloads.channel_headers(chain, asset, offered, payer, per_lane,
                                deposit_valid_for_s=DEPOSIT_VALID_FOR_S)
                for _ in range(args.concurrency)
            ]  # fmt: skip
            strangers = [LocalSigner.generate() for _ in range(32)]
            tally = Tally()
            plan = Plan(
                url,
                chain.network,
                strangers,
                payer,
                lanes,
                args.requests,
                tally.started + args.seconds_max,
                args.seed,
            )
            stop = threading.Event()
            seen = _watch(pid, tally, args.window_s, stop)
            say(f"soaking {url} with {args.requests} requests ...")
            asyncio.run(_load(plan, tally, args.concurrency))
            elapsed = time.monotonic() - tally.started
            rss_end = _rss_kib(pid)
            stop.set()
            seen["thread"].join(timeout=5)
        finally:
            servers.stop_server(process)

    windows = [count / args.window_s for count in seen["window_counts"]]
    first = windows[0] if windows else tally.done / elapsed
    slowest = min(windows) if windows else first
    rss_first = seen["rss_after_first_kib"] or (seen["rss_kib"][0] if seen["rss_kib"] else rss_end)
    report = {
        "bench": "soak_paywall",
        "requests": tally.done,
        "seconds": round(elapsed, 1),
        "per_s": round(tally.done / elapsed, 1),
        "window_s": args.window_s,
        "full_windows": len(windows),
        "first_window_per_s": round(first, 1),
        "slowest_window_per_s": round(slowest, 1),
        "slowest_vs_first": round(slowest / first, 3) if first else None,
        "rss_after_first_window_mib": round(rss_first / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "rss_max_mib": round(max(seen["rss_kib"] or [rss_end]) / 1024, 1),
        "rss_growth_pct": round((rss_end - rss_first) * 100 / rss_first, 2) if rss_first else None,
        "status_5xx": tally.status_5xx,
        "valid_sign_ins_refused": tally.valid_sign_ins_refused,
        "sign_ins_ok": tally.sign_ins_ok,
        "stranger_sign_ins": tally.stranger_sign_ins,
        "strangers_let_in": tally.strangers_let_in,
        "vouchers_paid": tally.vouchers_paid,
        "vouchers_refused": tally.vouchers_refused,
        "vouchers_exhausted": tally.vouchers_exhausted,
        "unexpected": dict(tally.unexpected),
        "statuses": dict(sorted(tally.statuses.items())),
        "concurrency": args.concurrency,
    }
    print(json.dumps(report, separators=(",", ":")), flush=True)
    bad = tally.status_5xx or tally.valid_sign_ins_refused or tally.strangers_let_in
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    servers.serve_or_run(main, _serve)
