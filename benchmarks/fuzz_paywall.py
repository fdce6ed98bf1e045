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
import base64
import faulthandler
import json
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

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
PROGRESS_EVERY_S: Final = 5.0
# Within the paywall's window (maxTimeoutSeconds 300 plus skew), minus verify's margin.
POOL_VALID_FOR_S: Final = 240
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

    from farthing.paywall.facilitator.cli import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    print(json.dumps({"url": f"http://{host}:{port}"}), flush=True)
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


@dataclass
class Headers:
    """The pre-built payment headers and bodies the cases draw from."""

    good: list[str]  # right terms, signed by the broke payer
    wrong_terms: list[str]
    replayed: str
    payload: dict[str, Any]  # one good payload as JSON, to mutate
    v1: str


_EVIL: Final[tuple[Any, ...]] = (
    None, True, False, 0, -1, 1, 2, 1.5, -0.0, 1e308, 10**80, -(10**80), 2**256, 2**256 - 1,
    "", "0", "-1", "1e6", "0x", "0x" + "0" * 64, " 10000", "10000 ", "10000\n", "+10000",
    "10_000", "١٠٠٠٠", "１００００", "0x2710", "00010000", "9" * 79, "9" * 78, [], {}, [1, 2],
    {"a": 1}, "a" * 3000, "\u0000", "\ud800", "eip155:1\n", "eip155:0", "eip155:" + "9" * 20,
    "0x" + "00" * 20, "0x" + "ff" * 20, "0X" + "ab" * 20, "exact", "EXACT", "upto",
)  # fmt: skip


def _mutate_json(rng: random.Random, data: Any, depth: int = 0) -> Any:
    """One structural change somewhere inside ``data`` (a copy)."""
    if isinstance(data, dict) and data and (depth < 3 and rng.random() < 0.7):
        data = dict(data)
        key = rng.choice(sorted(data))
        roll = rng.random()
        if roll < 0.15:
            del data[key]
        elif roll < 0.25:
            data[rng.choice(("extra", "__proto__", key.upper(), key + " "))] = rng.choice(_EVIL)
        elif roll < 0.6 and isinstance(data[key], (dict, list)):
            data[key] = _mutate_json(rng, data[key], depth + 1)
        else:
            data[key] = rng.choice(_EVIL)
        return data
    if isinstance(data, list) and data and rng.random() < 0.5:
        return [_mutate_json(rng, item, depth + 1) for item in data]
    return rng.choice(_EVIL)


def _b64(text: str | bytes) -> str:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def _payment_header(rng: random.Random, pool: Headers) -> tuple[str | None, str]:
    """A ``PAYMENT-SIGNATURE`` value (or None: absent) and its kind."""
    kinds = (
        "absent", "empty", "spaces", "not_base64", "urlsafe", "not_json", "wrong_shape",
        "mutated", "mutated", "mutated", "text_json", "deep", "huge", "good", "good",
        "wrong_terms", "wrong_terms", "replay", "v1_in_v2", "too_large", "tampered",
    )  # fmt: skip
    kind = rng.choice(kinds)
    good = json.dumps(pool.payload, separators=(",", ":"))
    if kind == "absent":
        return None, kind
    if kind == "empty":
        return "", kind
    if kind == "spaces":
        return " \t " + rng.choice(pool.good) + " ", kind
    if kind == "not_base64":
        return rng.choice(("!!!", "abc", "====", "YQ", "Y Q==", "eyJ", "%%%", "é" * 10)), kind
    if kind == "urlsafe":
        return _b64(good).replace("+", "-").replace("/", "_").rstrip("="), kind
    if kind == "not_json":
        raw = rng.choice((b"\xff\xfe\x00", b"not json", b"{", b"[1,", b"\xef\xbb\xbf{}", b"{}x"))
        return _b64(raw), kind
    if kind == "wrong_shape":
        shape: Any = rng.choice(
            ([], "2", 2, None, {}, {"x402Version": "2"}, {"x402Version": 2},
             {"x402Version": 2, "payload": []}, {"x402Version": 2.0, **pool.payload},
             {"x402Version": True}, {"x402Version": 10**30}, {"x402Version": -2})
        )  # fmt: skip
        return _b64(json.dumps(shape)), kind
    if kind == "mutated":
        mutated = pool.payload
        for _ in range(rng.randint(1, 3)):
            mutated = _mutate_json(rng, mutated)
        return _b64(json.dumps(mutated)), kind
    if kind == "text_json":
        text = rng.choice(
            (good.replace('"2"', "NaN", 1), good.replace("10000", "1e4"),
             good.replace("10000", "10000.0"), good.replace("10000", "-10000"),
             good[:-1] + ',"x402Version":1}', good.replace('"x402Version":2', '"x402Version":2e0'),
             '{"x402Version":Infinity}', good.replace('"', "'"), good + "\n", " " + good)
        )  # fmt: skip
        return _b64(text), kind
    if kind == "deep":
        depth = rng.choice((50, 999, 1500, 3000))
        return _b64("[" * depth + "]" * depth), kind
    if kind == "huge":
        return _b64('{"x402Version":' + "9" * rng.choice((20, 400, 4400)) + "}"), kind
    if kind == "good":
        return rng.choice(pool.good), kind
    if kind == "wrong_terms":
        return rng.choice(pool.wrong_terms), kind
    if kind == "replay":
        return pool.replayed, kind
    if kind == "v1_in_v2":
        return pool.v1, kind
    if kind == "too_large":
        return _b64(good + " " * rng.choice((6000, 9000, 20000))), kind
    # tampered: a good header with one base64 character changed
    header = rng.choice(pool.good)
    at = rng.randrange(len(header))
    return header[:at] + rng.choice("AB+/") + header[at + 1 :], kind


def make_case(index: int, seed: int, pool: Headers, targets: tuple[str, ...]) -> Case:
    rng = random.Random(f"{seed}/{index}")
    target = targets[index % len(targets)]
    method = _method(rng)
    raw_path, note = _path(rng)
    headers: list[tuple[bytes, bytes]] = [(b"host", b"paywall.test")]
    if rng.random() < 0.4:
        headers.append((b"accept", rng.choice((b"text/html", b"application/json", b"*/*"))))
    payment, kind = _payment_header(rng, pool)
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


# ---------------------------------------------------------------- driving a case


@dataclass
class Outcome:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    error: str | None = None


def scope_of(case: Case) -> dict[str, Any]:
    """The scope uvicorn would build for this request line (it unquotes the raw path)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": case.method,
        "scheme": "http",
        "path": unquote(case.raw_path.decode("ascii")),
        "raw_path": case.raw_path,
        "query_string": case.query,
        "root_path": "",
        "headers": list(case.headers),
        "client": ("127.0.0.1", 40000 + case.index % 20000),
        "server": ("127.0.0.1", 8080),
        "state": {},
        "extensions": {},
    }


async def drive(app: Any, case: Case, timeout_s: float) -> Outcome:
    outcome = Outcome()
    pieces = list(case.body) or [b""]
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pieces:
            chunk = pieces.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
        await finished.wait()  # the client stays until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if outcome.status:
                raise RuntimeError("the response was started twice")
            outcome.status = int(message["status"])
            outcome.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            outcome.body += message.get("body", b"")
            if not message.get("more_body"):
                finished.set()

    try:
        await asyncio.wait_for(app(scope_of(case), receive, send), timeout_s)
    except TimeoutError:
        outcome.error = "hang"
    except Exception:  # noqa: BLE001 - under a server this is a 500: report it, go on
        outcome.error = traceback.format_exc()
    finished.set()
    if outcome.error is None and outcome.status == 0:
        outcome.error = "the app returned without a response"
    return outcome


def judge(outcome: Outcome, marker: bytes) -> list[str]:
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


def reason_of(outcome: Outcome) -> str | None:
    """The JSON ``error`` of a refusal (400, 402, 405, 5xx), to show what the cases reached."""
    if outcome.status < 400 or not outcome.body.startswith(b"{"):
        return None
    try:
        error = json.loads(bytes(outcome.body)).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


def _unavailable(outcome: Outcome) -> bool:
    if outcome.status != 503:
        return False
    try:
        error = json.loads(bytes(outcome.body)).get("error")
    except (ValueError, AttributeError):
        return False
    return error in UNAVAILABLE_REASONS


# ---------------------------------------------------------------- set-up


@dataclass
class World:
    marker: str
    targets: dict[str, Any]
    pool: Headers
    sign_pool: Callable[[], Headers]
    upstream: subprocess.Popen[str] | None
    stores: list[Any]


def _start_upstream(marker: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    # The upstream's stderr goes to a file: a pipe nobody reads would fill and
    # stall the upstream, which would look like a paywall hang.
    with log.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve-upstream", marker],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        raise RuntimeError(f"the upstream did not start: {log.read_text()[-2000:]}")
    return process, str(json.loads(line)["url"])


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
    sign = _pool(chain, asset, merchant)
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
        upstream, url = _start_upstream(marker, workdir / "upstream.log")
        built["proxy"] = PaywallMiddleware(ReverseProxy(url), options=options("proxy"))
    return World(marker, built, pool, sign, upstream, stores)


def _pool(chain: Any, asset: Any, merchant: str) -> Callable[[], Headers]:
    """A signer of the payment headers: right terms by the broke payer, and wrong terms.

    The right terms' window is short (the paywall refuses a validBefore past
    now + maxTimeoutSeconds + skew), so the run signs them again every minute.
    """
    from farthing.paywall.wire import PaymentPayload, PaymentRequirements, encode_payment_signature
    from farthing.wallet.eip3009 import build_authorization, typed_data
    from farthing.wallet.signer import LocalSigner

    broke = LocalSigner.generate()  # never funded: no case can ever pay
    stranger = LocalSigner.generate()
    right = PaymentRequirements(
        network=chain.network,
        asset=asset.address,
        amount=PRICE_ATOMIC,
        pay_to=merchant,
        max_timeout_seconds=300,
        token_name=asset.name,
        token_version=asset.version,
    )

    def header(
        requirements: PaymentRequirements = right,
        signer: LocalSigner = broke,
        payer: str | None = None,
        **fields: Any,
    ) -> str:
        auth_fields: dict[str, Any] = {
            "from_address": payer or signer.address,
            "to": requirements.pay_to,
            "value": requirements.amount,
            "valid_for_s": POOL_VALID_FOR_S,
        }
        auth_fields.update(fields)
        authorization = build_authorization(**auth_fields)
        signature = signer.sign_typed_data(*typed_data(authorization, requirements.domain()))
        # The client claims the terms it signed, right or wrong.
        payload = PaymentPayload(
            accepted=requirements, authorization=authorization, signature=signature
        )
        return str(encode_payment_signature(payload))

    def other(**changes: Any) -> PaymentRequirements:
        fields = {
            "network": right.network,
            "asset": right.asset,
            "amount": right.amount,
            "pay_to": right.pay_to,
            "max_timeout_seconds": 300,
            "token_name": right.token_name,
            "token_version": right.token_version,
        }
        fields.update(changes)
        return PaymentRequirements(**fields)

    def sign() -> Headers:
        now = int(time.time())
        good = [header() for _ in range(8)]
        wrong = [
            header(other(amount=PRICE_ATOMIC - 1)),
            header(other(amount=PRICE_ATOMIC * 100)),
            header(other(pay_to=stranger.address)),
            header(other(network="eip155:1")),
            header(other(network="eip155:31337")),
            header(other(asset=stranger.address)),
            header(other(token_name="USD Coin")),
            header(other(token_version="1")),
            header(value=1),
            header(value=PRICE_ATOMIC + 1),
            header(to=stranger.address),
            header(now=now - 7200, valid_for_s=3600),  # expired an hour ago
            header(valid_after=now + 120),  # not valid yet
            header(now=now, valid_for_s=7 * 24 * 3600),  # far too long a window
            header(signer=stranger, payer=broke.address),  # signed by someone else
            header(signer=stranger),  # a stranger, also broke
        ]
        payload = json.loads(base64.b64decode(good[0]))
        v1 = {
            "x402Version": 1,
            "scheme": "exact",
            "network": "base-sepolia",
            "payload": payload["payload"],
        }
        return Headers(good, wrong, good[1], payload, _b64(json.dumps(v1)))

    return sign


# ---------------------------------------------------------------- the run


@dataclass
class Tally:
    cases: int = 0
    per_target: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    shown: Counter[str] = field(default_factory=Counter)


async def run_cases(world: World, indexes: range | list[int], args: argparse.Namespace) -> Tally:
    tally = Tally()
    names = tuple(sorted(world.targets))
    marker = world.marker.encode()
    started = last = signed = time.perf_counter()
    total = len(indexes)
    for count, index in enumerate(indexes, 1):
        if time.perf_counter() - signed > POOL_RESIGN_EVERY_S:
            world.pool, signed = world.sign_pool(), time.perf_counter()
        case = make_case(index, args.seed, world.pool, names)
        # A case stuck where cancellation cannot reach (a worker thread) would
        # stop the run silently: dump every thread's stack to stderr instead.
        faulthandler.dump_traceback_later(args.timeout_s * 2 + 5, exit=False)
        outcome = await drive(world.targets[case.target], case, args.timeout_s)
        faulthandler.cancel_dump_traceback_later()
        tally.cases += 1
        tally.per_target[case.target] += 1
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
            if tally.shown[failure] < args.show or args.only is not None:
                tally.shown[failure] += 1
                _report(failure, case, outcome, marker)
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            print(
                f"fuzz: {count}/{total} cases, {count / (now - started):.0f}/s, "
                f"5xx {tally.failures['status_5xx']}, unpaid {tally.failures['unpaid_content']}, "
                f"hangs {tally.failures['hang']}",
                file=sys.stderr,
                flush=True,
            )
    return tally


def _report(failure: str, case: Case, outcome: Outcome, marker: bytes) -> None:
    body = bytes(outcome.body)
    at = body.find(marker)
    excerpt = body[max(0, at - 80) : at + 80] if at >= 0 else body[:200]
    lines = [
        f"FOUND {failure}: {case.describe()}",
        f"  -> status {outcome.status or '-'}; body {excerpt!r}",
    ]
    if outcome.error and outcome.error != "hang":
        lines.append("  " + outcome.error.rstrip().replace("\n", "\n  "))
    print("\n".join(lines), file=sys.stderr, flush=True)


async def _close(world: World) -> None:
    proxy = world.targets.get("proxy")
    if proxy is not None:
        await proxy.app.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fuzz the paywall (middleware and reverse proxy) for 5xx and unpaid content."
    )
    parser.add_argument("--cases", type=int, default=100_000, help="number of cases (100000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the case generator (1)")
    parser.add_argument(
        "--target", choices=("both", "middleware", "proxy"), default="both", help="what to fuzz"
    )
    parser.add_argument("--only", type=int, default=None, help="run just this case index")
    parser.add_argument("--show", type=int, default=5, help="offending cases printed per kind")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="a case's time limit")
    args = parser.parse_args()
    if args.cases < 1:
        parser.error("--cases must be positive")
    targets = ("middleware", "proxy") if args.target == "both" else (args.target,)
    indexes: range | list[int] = range(args.cases) if args.only is None else [args.only]
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
                world.upstream.terminate()
                try:
                    world.upstream.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    world.upstream.kill()
                    world.upstream.communicate()
            for store in world.stores:
                store.dispose()
            log = Path(workdir) / "upstream.log"
            if log.exists() and log.stat().st_size:
                print(f"upstream stderr (tail):\n{log.read_text()[-3000:]}", file=sys.stderr)
    report: dict[str, Any] = {
        "bench": "fuzz",
        "cases": tally.cases,
        "status_5xx": tally.failures["status_5xx"],
        "unpaid_content": tally.failures["unpaid_content"],
        "hangs": tally.failures["hang"],
        "unpaid_content_headers_only": tally.failures["unpaid_content_headers_only"],
        "seed": args.seed,
        "cases_per_s": round(tally.cases / seconds, 1) if seconds > 0 else 0.0,
    }
    for name in targets:
        report[f"{name}_cases"] = tally.per_target[name]
        for failure in ("status_5xx", "unpaid_content"):
            report[f"{name}_{failure}"] = tally.failures[f"{name}_{failure}"]
    report["statuses"] = dict(sorted(tally.statuses.items()))
    report["reasons"] = dict(sorted(tally.reasons.items()))
    if tally.by_method:
        report["failures_by_method"] = dict(sorted(tally.by_method.items()))
    print(json.dumps(report))
    failed = report["status_5xx"] or report["unpaid_content"] or report["hangs"]
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-upstream":
        serve_upstream(sys.argv[2])
    else:
        sys.exit(main())
