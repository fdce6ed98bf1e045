"""No spelling of a paid path, and no method, reads paid content unpaid: in front of an ASGI app and through ``farthing paywall serve``.

The audit's bypasses (dot segments, doubled slashes, encoded dots, other
methods, lower-case methods) are sent as raw bytes: to the middleware as ASGI
scopes with the exact ``raw_path`` a server would give it, and to a real
``farthing paywall serve`` process over a raw socket, whose upstream echoes
the path it was asked for. Every one gets a 402 (or a 400, or a 405), never
the upstream's paid page, and the upstream only ever sees the canonical path.
Hypothesis checks that the canonical form is a fixed point with no dot or
empty segment left in it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.edge.paths import (
    PathRefusal,
    canonical_path,
    encode_path,
    remove_dot_segments,
)
from farthing.paywall.wire import unb64_json
from tests import zygote
from tests.conftest import cli_env
from tests.paywall.conftest import ChainEnv, serve_in_thread
from tests.raw_asgi import raw_asgi_request

SECRET = "PAID-CONTENT-7f3a"

# The audit's list, plus neighbours of each.
BYPASSES = [
    "/posts/x/../a",
    "/x/../posts/a",
    "/posts/./a",
    "/posts/a/.",
    "//posts/a",
    "/posts//a",
    "/posts/a/",
    "/./posts/a",
    "/posts/a/b/..",
    "/../posts/a",
    "///posts///a",
    "/posts/a?x=/../free",
]
ENCODED = [
    "/posts/%2e%2e/posts/a",
    "/posts/%2E%2e/posts/a",
    "/free/%2e%2e/posts/a",
    "/posts%2fa",
    "/posts%2Fa",
    "/posts/a%2f",
    "/posts%5ca",
    "/posts\\a",
    "/posts/a%00",
    "/%2e/posts/a",
]
# Path parameters: Tomcat and Spring drop ";..." from a segment, so "/posts;/a" is "/posts/a" there.
PARAMETERS = [
    "/posts;/a",
    "/posts;x=1/a",
    "/posts/a;jsessionid=1",
    "/posts%3b/a",
    "/posts%3B/a",
    "/free;/../posts/a",
]


# ------------------------------------------------------------------ the canonical form


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/posts/x/../a", "/posts/a"),
        ("/x/../posts/a", "/posts/a"),
        ("/posts/./a", "/posts/a"),
        ("/posts/a/.", "/posts/a/"),
        ("//posts/a", "/posts/a"),
        ("/posts//a", "/posts/a"),
        ("/", "/"),
        ("/..", "/"),
        ("/a/b/..", "/a/"),
        ("/posts/", "/posts/"),
        ("/caf%C3%A9", "/café"),
        ("/a%3Fb", "/a?b"),
        ("/a?b=../c", "/a"),
    ],
)
def test_known_paths_have_one_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_path({"raw_path": raw.encode(), "path": "/ignored"}) == canonical


@pytest.mark.parametrize("raw", ENCODED + ["/%ff", "posts/a", "/" + "a" * 9000])
def test_encoded_separators_and_bad_bytes_are_refused(raw: str) -> None:
    refused = canonical_path({"raw_path": raw.encode(), "path": raw})
    assert isinstance(refused, PathRefusal), raw
    assert refused.reason in {
        "encoded_path_separator",
        "invalid_path",
        "invalid_path_encoding",
        "path_too_long",
    }


@pytest.mark.parametrize("raw", PARAMETERS)
def test_a_semicolon_in_the_path_is_refused(raw: str) -> None:
    refused = canonical_path({"raw_path": raw.encode(), "path": raw})
    assert isinstance(refused, PathRefusal), raw
    assert refused.reason == "path_parameter"
    # A server that keeps no raw bytes: the decoded ';' is refused too.
    assert isinstance(canonical_path({"path": "/posts;/a"}), PathRefusal)


def test_a_semicolon_in_the_query_is_the_query_s_business() -> None:
    assert canonical_path({"raw_path": b"/posts/a?x=1;y=2", "path": "/posts/a"}) == "/posts/a"


def test_without_raw_path_the_decoded_path_is_not_decoded_twice() -> None:
    # A server that keeps no raw bytes has decoded %252e to %2e already; it is a name, not a dot.
    assert canonical_path({"path": "/posts/%2e%2e/a"}) == "/posts/%2e%2e/a"
    assert canonical_path({"path": "/posts/x/../a"}) == "/posts/a"


segments = st.lists(
    st.sampled_from(["", ".", "..", "a", "posts", "b c", "é", "%", "?", "#", ";x"]), max_size=8
)


@given(segments)
def test_the_canonical_path_is_a_fixed_point_without_dot_or_empty_segments(
    parts: list[str],
) -> None:
    path = "/" + "/".join(parts)
    canonical = remove_dot_segments(path)
    assert canonical.startswith("/")
    inner = canonical.strip("/").split("/") if canonical != "/" else []
    assert all(segment not in ("", ".", "..") for segment in inner)
    again = canonical_path({"raw_path": encode_path(canonical), "path": canonical})
    if ";" in canonical:
        assert isinstance(again, PathRefusal) and again.reason == "path_parameter"
    else:
        assert again == canonical


# ------------------------------------------------------------------ in front of an ASGI app


async def _echo(request: Request) -> Response:
    """A careless upstream: every method gets the page, and the page leaks into a header too."""
    return PlainTextResponse(
        f"{SECRET} {request.method} {request.url.path}",
        headers={"x-page": SECRET, "access-control-allow-origin": "https://reader.example"},
    )


def _paywalled(env: ChainEnv, store: PaymentStore) -> PaywallMiddleware:
    upstream = Starlette(
        routes=[
            Route(
                "/{rest:path}",
                _echo,
                methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
            )
        ]
    )
    return PaywallMiddleware(
        upstream,
        options=PaywallOptions(
            routes=[PaidRoute("/posts/*", "0.01 USDC")],
            facilitator=env.facilitator(),
            store=store,
            pay_to=env.merchant,
            asset=env.asset,
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> PaymentStore:
    return PaymentStore.sqlite(tmp_path / "payments.sqlite")


@pytest.mark.anvil
def test_no_spelling_of_a_paid_path_reaches_the_app_unpaid(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    app = _paywalled(chain_env, store)

    async def go() -> None:
        for raw in BYPASSES:
            status, headers, body = await raw_asgi_request(app, "GET", raw.encode())
            assert status == 402, (raw, status, body)
            assert SECRET.encode() not in body, raw
            assert SECRET not in "".join(headers.values()), raw
            url = unb64_json(headers["payment-required"])["resource"]["url"]
            assert urlsplit(url).path in ("/posts/a", "/posts/a/"), (raw, url)
        for raw in ENCODED:
            status, _, body = await raw_asgi_request(app, "GET", raw.encode())
            assert status == 400, (raw, status, body)
            assert SECRET.encode() not in body
            assert json.loads(body)["error"] in ("encoded_path_separator", "invalid_path")
        for raw in PARAMETERS:
            status, _, body = await raw_asgi_request(app, "GET", raw.encode())
            assert status == 400, (raw, status, body)
            assert SECRET.encode() not in body
            assert json.loads(body)["error"] == "path_parameter"
        # A free path is still free, and reaches the app canonical.
        status, _, body = await raw_asgi_request(app, "GET", b"/posts/../free//page")
        assert status == 200 and body.endswith(b"GET /free/page")

    asyncio.run(go())


@pytest.mark.anvil
def test_no_method_reaches_a_paid_path_unpaid(chain_env: ChainEnv, store: PaymentStore) -> None:
    app = _paywalled(chain_env, store)

    async def go() -> None:
        for method in ("get", "Get", "gEt"):
            status, headers, body = await raw_asgi_request(app, method, b"/posts/a")
            assert status == 402 and SECRET.encode() not in body, method
            assert "payment-required" in headers
        for method in ("POST", "PUT", "DELETE", "PATCH", "post", "BREW", "PROPFIND"):
            status, headers, body = await raw_asgi_request(app, method, b"/posts/a")
            assert status == 405, (method, status)
            assert SECRET.encode() not in body
            assert headers["allow"] == "GET, HEAD, OPTIONS"
            assert json.loads(body)["error"] == "method_not_allowed"
        # HEAD learns the price and nothing else.
        status, headers, body = await raw_asgi_request(app, "HEAD", b"/posts/a")
        assert status == 402 and body == b""
        assert "payment-required" in headers
        # OPTIONS reaches the app (CORS preflights) but no body comes back.
        status, headers, body = await raw_asgi_request(app, "OPTIONS", b"/posts/a")
        assert body == b"" and headers["content-length"] == "0"
        assert headers["access-control-allow-origin"] == "https://reader.example"
        assert SECRET not in "".join(headers.values()), headers
        # Methods on a free path are the app's business.
        status, _, body = await raw_asgi_request(app, "POST", b"/free")
        assert status == 200 and body.endswith(b"POST /free")

    asyncio.run(go())


# ------------------------------------------------------------------ through `farthing paywall serve`


@pytest.fixture
def served(chain_env: ChainEnv, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """``farthing paywall serve --route "GET /posts/* 0.01 USDC"`` in front of an echoing upstream."""
    seen: list[str] = []

    async def echo(request: Request) -> Response:
        seen.append(request.scope.get("raw_path", b"").decode("latin-1"))
        return PlainTextResponse(f"{SECRET} {request.method} {request.url.path}")

    upstream_app = Starlette(
        routes=[Route("/{rest:path}", echo, methods=["GET", "HEAD", "POST", "PUT", "DELETE"])]
    )
    key = tmp_path / "relayer.key"
    key.write_text(chain_env.chain.dev_accounts()[7].private_key.get_secret_value())
    key.chmod(0o600)
    with serve_in_thread(upstream_app) as upstream:
        process = zygote.spawn(
            [
                sys.executable, "-m", "farthing", "paywall", "serve", "--json",
                "--upstream", upstream, "--route", "GET /posts/* 0.01 USDC",
                "--pay-to", chain_env.merchant, "--token", chain_env.asset.address,
                "--rpc-url", chain_env.chain.rpc_url, "--key-file", str(key),
                "--database-url", f"sqlite:///{tmp_path / 'payments.sqlite'}", "--port", "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(tmp_path / "data"),
        )  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"paywall serve did not start: {process.communicate(timeout=10)[1]}")
        try:
            yield json.loads(line)["url"], seen
        finally:
            process.terminate()
            process.communicate(timeout=15)


def _raw_request(base: str, method: str, target: str) -> tuple[int, bytes]:
    """Send ``target`` byte for byte (no client-side normalisation) and read the answer."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.anvil
def test_paywall_serve_forwards_only_canonical_paths_and_never_unpaid_content(
    served: tuple[str, list[str]],
) -> None:
    base, seen = served
    for target in BYPASSES:
        status, body = _raw_request(base, "GET", target)
        assert status == 402, (target, status, body[:200])
        assert SECRET.encode() not in body, target
    for target in ENCODED + PARAMETERS:
        status, body = _raw_request(base, "GET", target)
        assert status == 400, (target, status, body[:200])
        assert SECRET.encode() not in body, target
    for method in ("POST", "PUT", "DELETE"):
        status, body = _raw_request(base, method, "/posts/a")
        assert status == 405 and SECRET.encode() not in body, method
    status, body = _raw_request(base, "HEAD", "/posts/a")
    assert status == 402 and body == b""
    # The upstream was never asked for a paid page: only for the free one, canonical.
    assert seen == []
    status, body = _raw_request(base, "GET", "/posts/../free//x%3Fy")
    assert status == 200 and body.startswith(SECRET.encode())
    assert seen == ["/free/x%3Fy"]
    # A ';' in the query is no path parameter: forwarded as it came.
    status, body = _raw_request(base, "GET", "/free/q?a=1;b=2")
    assert status == 200 and seen[-1] == "/free/q"


def test_the_proxy_alone_answers_a_path_no_url_can_carry_with_400() -> None:
    from farthing.paywall.site.proxy import ReverseProxy

    proxy = ReverseProxy("http://127.0.0.1:9")  # never reached
    for target in (b"/a\tb", b"/a\x00b"):
        status, _, body = asyncio.run(raw_asgi_request(proxy, "GET", target))
        assert status == 400 and json.loads(body)["error"] == "invalid_path", (target, status)
