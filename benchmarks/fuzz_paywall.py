"""Structure-aware fuzzing of the paywall's edge: no 5xx, and no paid content unpaid.

Two targets, on the in-process memory chain with our token deployed:

* ``middleware``: ``PaywallMiddleware`` in front of a small ASGI site, driven
  directly as ASGI (no sockets, fast);
* ``proxy``: the middleware around ``ReverseProxy``, as ``farthing paywall
  serve`` builds it, driven as ASGI too; its upstream is the same site served
  by a real uvicorn (h11, so odd method tokens reach it) on 127.0.0.1 in a
  process of its own.

The site is deliberately permissive, like many real upstreams: it answers every
method, turns ``\\`` into ``/``, merges slashes and removes dot segments before
it looks a path up. A page whose canonical path the paywall prices carries a
secret marker in its paid part (past the free preview) and in a header. The
only payer holds nothing, so no request can ever pay: any response that
carries the marker is ``unpaid_content``. Any status of 500 or more is
``status_5xx``, except a 503 whose JSON ``error`` is a documented
unavailability reason; an exception out of the app counts as a 500, and a case
that does not finish within ``--timeout-s`` is a hang.

Every case is built from structured parts (paths with dot segments, encoded
dots, slashes and backslashes, double slashes, unicode, long segments, query
strings and fragments; methods in any case and odd tokens; payment headers
absent, empty, not base64, not JSON, of wrong shapes and types, signed over
wrong terms, signed by the broke payer, replayed, duplicated, or X-PAYMENT v1;
bodies) from ``random.Random(f"{seed}/{index}")``, so ``--only INDEX``
replays one case (the same parts; keys and signatures are fresh each run, and
signed again every minute to stay inside the paywall's validBefore window).
Progress goes to stderr, the first few offending
cases too, and the last stdout line is one JSON object. The exit status is 1
when any case failed.

    python benchmarks/fuzz_paywall.py [--cases 100000] [--seed 1] [--target both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fuzzing
from payment_headers import Headers, header_signer, payment_header
from servers import listen, start_server, stop_server

from farthing.paywall.edge.routes import PaidRoute, compile_glob

PRICE_ATOMIC: Final = 10_000
# The 503 reasons the paywall documents as "try again later": not a crash.
UNAVAILABLE_REASONS: Final = frozenset(
    {
        "facilitator_unavailable",
        "payment_database_unavailable",
        "settlement_pending",
        "payment_in_progress",
    }
)
POOL_RESIGN_EVERY_S: Final = 60.0


def paid_routes() -> list[PaidRoute]:
    """The routes both targets charge for (an article route and an API)."""
    return [
        PaidRoute(
            "/posts/*",
            PRICE_ATOMIC,
            description="a post",
            mime_type="text/html",
            preview_fraction=Decimal("0.3"),
        ),
        PaidRoute("/api/**", PRICE_ATOMIC, methods=("GET", "POST"), description="data"),
    ]


# ---------------------------------------------------------------- the site

_PAID_PATTERNS: Final = tuple(compile_glob(route.path) for route in paid_routes())


def lenient_path(path: str) -> str:
    """What a permissive upstream looks up: ``\\`` as ``/``, slashes merged, dot segments gone."""
    path = re.sub("/{2,}", "/", path.replace("\\", "/"))
    out: list[str] = []
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def make_site(marker: str) -> Any:
    """The ASGI site behind the paywall: paid pages carry ``marker`` past their preview."""
    secret = marker.encode()

    def article(slug: str) -> bytes:
        free = "".join(
            f"<p>Free paragraph {n} of {slug}: the farthing was a quarter of a penny.</p>\n"
            for n in range(3)
        )
        paid = "".join(
            f"<p>Paid paragraph {n}: {marker} collectors still trade them.</p>\n" for n in range(3)
        )
        return (
            f"<html><body><article><h1>{slug}</h1>\n{free}{paid}</article></body></html>".encode()
        )

    async def site(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = lenient_path(scope["path"])
        headers: list[tuple[bytes, bytes]] = []
        if len(path) > 1 and path.endswith("/"):
            status, kind, body = 307, b"text/plain", b"moved"
            headers.append((b"location", quote(path.rstrip("/")).encode()))
        elif any(pattern.match(path) for pattern in _PAID_PATTERNS):
            headers.append((b"x-page-key", secret))
            if path.startswith("/posts/"):
                status, kind, body = 200, b"text/html; charset=utf-8", article(path[7:])
            else:
                status, kind = 200, b"application/json"
                body = json.dumps({"secret": marker, "path": path}).encode()
        elif path in ("/", "/free", "/posts", "/api"):
            status, kind, body = 200, b"text/plain", b"free page"
        else:
            status, kind, body = 404, b"text/plain", b"not found"
        if scope["method"].upper() == "CONNECT" and status == 200:
            status = 418  # h11 takes a 2xx to CONNECT as a tunnel; the page still goes out
        if scope["method"].upper() == "HEAD":
            body = b""
        headers += [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return site


def serve_upstream(marker: str) -> None:
    """``--serve-upstream MARKER``: the site on a real uvicorn, announced as one JSON line."""
    import uvicorn

    sock, url = listen()
    print(json.dumps({"url": url}), flush=True)
    config = uvicorn.Config(
        make_site(marker), http="h11", log_level="error", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])


# ---------------------------------------------------------------- the cases

_TCHAR: Final = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_METHODS: Final = (
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    "PROPFIND", "MKCOL", "PURGE", "QUERY", "LINK", "SEARCH",
)  # fmt: skip
_PAID_PREFIXES: Final = ("/posts/", "/api/", "/api/v1/", "/posts")
_FREE_PREFIXES: Final = ("/", "/free/", "/free", "/about/", "/static/")
_SLUGS: Final = (
    "a", "hello-world", "data", "x.json", "caf%C3%A9", "%E6%96%87%E7%AB%A0", "%F0%9F%92%B0",
    "index.html", "a.", "a..", "...", "-", "~user", "%20", "a%20b", "%00", "%ff", "%",
    "%zz", "%2", "a;b=c", "a,b", "a:b", "@", "%40", "%7e", "%25", "%252e", "%252f",
)  # fmt: skip
_TRICKS: Final = (
    ".", "..", "%2e", "%2E", "%2e%2e", "%2E%2e", "%2e.", ".%2E", "%2f", "%2F", "%5c", "%5C",
    "\\", "", "%3f", "%3F", "%23", "..;", ".;", ";", "%c0%ae", "%u002e", "%2e%2e%2f",
    "..%2f", "..%5c", "..\\", ".%00", "%09", ".%20",
)  # fmt: skip


@dataclass
class Case:
    index: int
    target: str
    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: list[bytes]
    note: str = ""

    def describe(self) -> str:
        shown = [(k.decode("latin-1"), _clip(v.decode("latin-1"), 120)) for k, v in self.headers]
        return (
            f"case {self.index} [{self.target}] {self.method!r} "
            f"{_clip(self.raw_path.decode('latin-1'), 200)!r} query={_clip(self.query.decode('latin-1'), 60)!r} "
            f"headers={shown} body={sum(map(len, self.body))}B ({self.note})"
        )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit})"


def _method(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:  # mostly what the routes sell, so the payment headers get looked at
        return rng.choice(("GET", "GET", "GET", "POST"))
    base = rng.choice(_METHODS)
    if roll < 0.6:
        return base
    if roll < 0.8:  # letter case
        return "".join(c.lower() if rng.random() < 0.5 else c for c in base)
    if roll < 0.9:
        return base.lower()
    return "".join(rng.choice(_TCHAR) for _ in range(rng.randint(1, 12)))


def _segment(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(_SLUGS)
    if roll < 0.9:
        return rng.choice(_TRICKS)
    if roll < 0.97:
        return quote("ü" * rng.randint(1, 50) + "文", safe="")
    return "x" * rng.choice((255, 1000, 4000, 9000))


def _path(rng: random.Random) -> tuple[bytes, str]:
    """A raw (percent-encoded, ASCII) request path and a note of how it was built."""
    if rng.random() < 0.45:  # a plain path, so the payment headers get looked at
        plain = rng.choice(("/posts/a", "/posts/hello-world", "/api/data", "/api/v1/x", "/free"))
        return plain.encode("ascii"), "plain path"
    prefix = rng.choice(_PAID_PREFIXES if rng.random() < 0.8 else _FREE_PREFIXES)
    parts = [_segment(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4)))]
    # A path that walks out of a free prefix into a paid one, or in and out.
    roll = rng.random()
    if roll < 0.25:
        target = rng.choice(("posts/a", "api/data", "api/v1/x", "posts/hello-world"))
        up = rng.choice(("..", "%2e%2e", "%2E%2e", ".%2e", "..\\", "..%5c", "..%2f"))
        parts = [rng.choice(("free", "x", ".", "%2e")), up, target]
        prefix = rng.choice(("/", "/free/", "//", "/./", "/posts/", "/api/"))
    text = prefix + "/".join(parts)
    mutations = rng.randint(0, 3)
    for _ in range(mutations):
        kind = rng.randrange(9)
        if kind == 0:
            text = "/" + text  # a leading double slash
        elif kind == 1 and "/" in text[1:]:
            at = rng.choice([i for i, c in enumerate(text) if c == "/"])
            text = (
                text[:at] + rng.choice(("//", "/./", "/%2e/", "\\", "/%2f", "/;/")) + text[at + 1 :]
            )
        elif kind == 2:
            text += rng.choice(("/", ".", "/.", "/..", "//", "%2e", "%2f", "\\", "%20", "..", ";"))
        elif kind == 3:
            text = text.replace("posts", rng.choice(("POSTS", "Posts", "post%73", "%70osts")), 1)
        elif kind == 4:
            text = text.replace("api", rng.choice(("API", "%61pi", "ap%69")), 1)
        elif kind == 5:
            text += "#" + rng.choice(("frag", "/../posts/a", ""))
        elif kind == 6:
            text = text.replace("/", rng.choice(("%2f", "%2F", "%5c", "\\")), 1)
        elif kind == 7 and rng.random() < 0.3:
            text = rng.choice(("*", "", "posts/a", "http://evil.test/posts/a", "?"))
        else:
            text += "/" + rng.choice(_TRICKS)
    encoded = "".join(c if 0x20 < ord(c) < 0x7F else quote(c, safe="") for c in text)
    return encoded.encode("ascii"), f"{mutations} path mutations"


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """The raw path and query of a request target, split as uvicorn splits it."""
    path, _, query = target.partition(b"?")
    return path, query


def _query(rng: random.Random) -> bytes:
    """A query string to append to the target, with its ``?`` (or nothing)."""
    if rng.random() < 0.6:
        return b""
    return b"?" + rng.choice(
        (b"a=1", b"n=%00", b"x=../../posts/a", b"", b"=&&=", b"q=" + b"z" * 3000, b"a=%zz%", b"?")
    )


def make_case(index: int, seed: int, pool: Headers, targets: tuple[str, ...]) -> Case:
    rng = random.Random(f"{seed}/{index}")
    target = targets[index % len(targets)]
    method = _method(rng)
    raw_path, note = _path(rng)
    headers: list[tuple[bytes, bytes]] = [(b"host", b"paywall.test")]
    if rng.random() < 0.4:
        headers.append((b"accept", rng.choice((b"text/html", b"application/json", b"*/*"))))
    payment, kind = payment_header(rng, pool)
    if payment is not None:
        value = payment.encode("latin-1", "replace")
        headers.append((b"payment-signature", value))
        if rng.random() < 0.1:  # a duplicate, the same or another
            headers.append((b"payment-signature", rng.choice((value, pool.good[0].encode(), b"x"))))
            kind += "+duplicate"
    if rng.random() < 0.1:
        headers.append((b"x-payment", pool.v1.encode()))
        kind += "+x-payment"
    if rng.random() < 0.1:
        headers.append((rng.choice((b"x-forwarded-for", b"x-original-url", b"x-rewrite-url")),
                        rng.choice((b"/posts/a", b"127.0.0.1", b"\xe9t\xe9"))))  # fmt: skip
    raw_path, query = _split_target(raw_path + _query(rng))
    body = _body(rng)
    if body:
        headers.append((b"content-type", rng.choice((b"application/json", b"text/plain"))))
        headers.append((b"content-length", str(sum(map(len, body))).encode()))
    return Case(index, target, method, raw_path, query, headers, body, f"{note}, {kind}")


def _body(rng: random.Random) -> list[bytes]:
    roll = rng.random()
    if roll < 0.6:
        return []
    if roll < 0.75:
        return [b'{"q":"what is a farthing?"}']
    if roll < 0.85:
        return [rng.randbytes(rng.randint(1, 2000))]
    if roll < 0.95:  # in pieces
        return [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(2, 5))]
    return [b"x" * 70_000]


# ---------------------------------------------------------------- judging a case


def judge(outcome: fuzzing.Outcome, marker: bytes) -> list[str]:
    """The failures of one outcome: ``hang``, ``status_5xx``, ``unpaid_content``."""
    failures = []
    if outcome.error == "hang":
        failures.append("hang")
    elif outcome.error is not None or outcome.status >= 500 and not _unavailable(outcome):
        failures.append("status_5xx")
    if marker in outcome.body:
        failures.append("unpaid_content")
    elif any(marker in k or marker in v for k, v in outcome.headers):
        # Still unpaid content (the page's own headers), counted apart to tell them apart.
        failures += ["unpaid_content", "unpaid_content_headers_only"]
    return failures


def reason_of(outcome: fuzzing.Outcome) -> str | None:
    """The JSON ``error`` of a refusal (400, 402, 405, 5xx), to show what the cases reached."""
    if outcome.status < 400:
        return None
    error = (fuzzing.json_object(outcome.body) or {}).get("error")
    return error if isinstance(error, str) else None


def _unavailable(outcome: fuzzing.Outcome) -> bool:
    return outcome.status == 503 and reason_of(outcome) in UNAVAILABLE_REASONS


# ---------------------------------------------------------------- set-up


@dataclass
class World:
    marker: str
    targets: dict[str, Any]
    pool: Headers
    sign_pool: Callable[[], Headers]
    upstream: subprocess.Popen[str] | None
    stores: list[Any]


def build_world(workdir: Path, targets: tuple[str, ...]) -> World:
    from farthing.paywall import LocalFacilitator, PaymentStore, PaywallMiddleware, PaywallOptions
    from farthing.paywall.site.proxy import ReverseProxy
    from farthing.wallet.chain import open_chain
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

    chain = open_chain("memory")
    accounts = [account.signer() for account in chain.dev_accounts()[:4]]
    owner, relayer = accounts[0], accounts[3]
    asset = deploy_stablecoin(chain, sender=owner)
    if not Stablecoin(chain, asset).configure_minter(owner.address, sender=owner).ok:
        raise RuntimeError("cannot make the owner a minter")
    merchant = LocalSigner.generate().address
    facilitator = LocalFacilitator(chain, relayer)
    marker = "PAIDMARK" + secrets.token_hex(12)
    sign = header_signer(chain, asset, merchant, PRICE_ATOMIC)
    pool = sign()  # before the upstream starts, so a failure here leaves no process behind
    built: dict[str, Any] = {}
    stores = []
    upstream = None

    def options(name: str) -> PaywallOptions:
        store = PaymentStore.sqlite(workdir / f"{name}.sqlite")
        stores.append(store)
        return PaywallOptions(
            routes=paid_routes(), facilitator=facilitator, store=store, pay_to=merchant, asset=asset
        )

    if "middleware" in targets:
        built["middleware"] = PaywallMiddleware(make_site(marker), options=options("middleware"))
    if "proxy" in targets:
        # Its stderr goes to a file, shown at the end when it said anything.
        upstream, ready = start_server(
            __file__, "--serve-upstream", marker, log=workdir / "upstream.log"
        )
        url = str(ready["url"])
        built["proxy"] = PaywallMiddleware(ReverseProxy(url), options=options("proxy"))
    return World(marker, built, pool, sign, upstream, stores)


# ---------------------------------------------------------------- the run


@dataclass
class Tally(fuzzing.Tally):
    by_method: Counter[str] = field(default_factory=Counter)


async def run_cases(world: World, indexes: range | list[int], args: argparse.Namespace) -> Tally:
    tally = Tally()
    names = tuple(sorted(world.targets))
    marker = world.marker.encode()
    progress = fuzzing.Progress("fuzz", len(indexes))
    shown = fuzzing.Shown(args.show, args.only is not None)
    signed = time.perf_counter()
    for count, index in enumerate(indexes, 1):
        if time.perf_counter() - signed > POOL_RESIGN_EVERY_S:
            world.pool, signed = world.sign_pool(), time.perf_counter()
        case = make_case(index, args.seed, world.pool, names)
        scope = fuzzing.scope_of(case.method, case.raw_path, case.query, case.headers,
                         client=("127.0.0.1", 40000 + case.index % 20000), port=8080)  # fmt: skip
        outcome = await fuzzing.drive(world.targets[case.target], scope, case.body, args.timeout_s)
        tally.cases += 1
        tally.kinds[case.target] += 1
        tally.statuses[f"{case.target}:{outcome.status or 'error'}"] += 1
        reason = reason_of(outcome)
        if reason is not None:
            tally.reasons[reason[:60]] += 1
        for failure in judge(outcome, marker):
            tally.failures[failure] += 1
            tally.failures[f"{case.target}_{failure}"] += 1
            tally.by_method[f"{failure}:{case.method.upper()[:20]}"] += 1
            if failure == "unpaid_content_headers_only":
                continue
            if shown.due(failure):
                body = bytes(outcome.body)
                at = body.find(marker)
                excerpt = body[max(0, at - 80) : at + 80] if at >= 0 else body[:200]
                fuzzing.show_found(failure, case.describe(), outcome.status, excerpt, outcome.error)
        progress.tick(
            count,
            f"5xx {tally.failures['status_5xx']}, unpaid {tally.failures['unpaid_content']}, "
            f"hangs {tally.failures['hang']}",
        )
    return tally


async def _close(world: World) -> None:
    proxy = world.targets.get("proxy")
    if proxy is not None:
        await proxy.app.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fuzz the paywall (middleware and reverse proxy) for 5xx and unpaid content."
    )
    fuzzing.add_case_arguments(parser, timeout_s=30.0)
    parser.add_argument(
        "--target", choices=("both", "middleware", "proxy"), default="both", help="what to fuzz"
    )
    args = parser.parse_args()
    targets = ("middleware", "proxy") if args.target == "both" else (args.target,)
    indexes = fuzzing.case_indexes(parser, args)
    with tempfile.TemporaryDirectory(prefix="fuzz-paywall-") as workdir:
        world = build_world(Path(workdir), targets)
        try:

            async def session() -> tuple[Tally, float]:
                started = time.perf_counter()
                try:
                    tally = await run_cases(world, indexes, args)
                finally:
                    await _close(world)
                return tally, time.perf_counter() - started

            tally, seconds = asyncio.run(session())
        finally:
            if world.upstream is not None:
                stop_server(world.upstream)
            for store in world.stores:
                store.dispose()
            log = Path(workdir) / "upstream.log"
            if log.exists() and log.stat().st_size:
                print(f"upstream stderr (tail):\n{log.read_text()[-3000:]}", file=sys.stderr)
    report: dict[str, Any] = {
        **fuzzing.report_head("fuzz", tally),
        "unpaid_content": tally.failures["unpaid_content"],
        "hangs": tally.failures["hang"],
        "unpaid_content_headers_only": tally.failures["unpaid_content_headers_only"],
        "seed": args.seed,
        "cases_per_s": fuzzing.cases_per_s(tally, seconds),
    }
    for name in targets:
        report[f"{name}_cases"] = tally.kinds[name]
        for failure in ("status_5xx", "unpaid_content"):
            report[f"{name}_{failure}"] = tally.failures[f"{name}_{failure}"]
    report["statuses"] = dict(sorted(tally.statuses.items()))
    report["reasons"] = dict(sorted(tally.reasons.items()))
    if tally.by_method:
        report["failures_by_method"] = dict(sorted(tally.by_method.items()))
    failed = report["status_5xx"] or report["unpaid_content"] or report["hangs"]
    return fuzzing.finish(report, bool(failed))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-upstream":
        serve_upstream(sys.argv[2])
    else:
        sys.exit(main())
