"""The shared web edge refuses deep JSON without recursing and answers only its own host names.

``loads_bounded`` is driven with documents far deeper than the interpreter's
recursion limit (they must be refused as values, never crash), and with the
ordinary documents it must still parse. ``HostGuard`` wraps a real Starlette
app driven through httpx's ASGI transport with forged and honest ``Host``
headers.
"""

from __future__ import annotations

import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from farthing.errors import FarthingError
from farthing.web import HostGuard, JsonBodyError, allowed_hosts, host_of, json_depth, loads_bounded
from tests import zygote


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[[[", "b": [1, {"c": "]]]\\"[["}]}') == 3
    assert json_depth(b"7") == 0
    assert json_depth(b"[]") == 1


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_a_document_100000_deep_is_refused_as_a_value(opener: str, closer: str) -> None:
    body = (opener * 100_000 + "1" + closer * 100_000).encode()
    with pytest.raises(JsonBodyError) as caught:
        loads_bounded(body)
    assert caught.value.reason == "json_too_deep"


def test_ordinary_documents_parse_and_bad_ones_are_refused() -> None:
    assert loads_bounded(b'{"content": "a[b]c", "n": [1, 2]}') == {"content": "a[b]c", "n": [1, 2]}
    assert loads_bounded(b'{"pair": "\\ud83d\\ude00", "e": "\\u00e9"}') == {
        "pair": "\U0001f600",
        "e": "\u00e9",
    }
    for raw, reason in [
        (b"{", "invalid_json"),
        (b"\xff\xfe", "invalid_encoding"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"content": "a\\ud800b"}', "invalid_text"),
        (b'{"\\udc00": 1}', "invalid_text"),
        (b"[" + b"1," * 600_000 + b"1]", "body_too_large"),
    ]:
        with pytest.raises(JsonBodyError) as caught:
            loads_bounded(raw)
        assert caught.value.reason == reason


# Every module a Farthing process serves from. Each is imported first in a
# fresh interpreter: whichever comes first pulls in the dependencies that
# raise the limit (py_ecc through eth_account, py-evm through eth_tester).
SERVER_MODULES = (
    "farthing.cli",
    "farthing.jobs.server",
    "farthing.paywall.edge.middleware",
    "farthing.paywall.facilitator.api",
    "farthing.paywall.site.proxy",
    "farthing.inference.gateway",
    "farthing.dashboard.app",
    "farthing.agents.blog",
)
_PRINT_LIMIT = "import sys; print(sys.getrecursionlimit())"


def _limits(code: str) -> tuple[int, int]:
    """The recursion limit before and after ``code`` runs in a fresh interpreter."""
    script = f"{_PRINT_LIMIT}\n{code}\n{_PRINT_LIMIT}\n"
    proc = zygote.run_process(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = proc.stdout.split()[-2:]
    return int(before), int(after)


@pytest.mark.parametrize("module", SERVER_MODULES)
def test_importing_a_server_first_leaves_the_recursion_limit_alone(module: str) -> None:
    before, after = _limits(f"import {module}")
    assert after == before <= 1000


def test_every_farthing_module_and_the_memory_chain_leave_the_recursion_limit_alone() -> None:
    code = """
import pkgutil, farthing
names = [m.name for m in pkgutil.walk_packages(farthing.__path__, "farthing.")]
for p in ("wallet", "ledger", "paywall", "agents", "inference", "dashboard", "jobs", "web"):
    package = __import__(f"farthing.{p}", fromlist=["_"])
    names += [m.name for m in pkgutil.walk_packages(package.__path__, f"farthing.{p}.")]
for name in names:
    if ".migrations." not in name and not name.endswith("__main__"):
        __import__(name)
from farthing.wallet.chain import MemoryChain
MemoryChain(accounts=1).close()
assert len(names) > 100, names
"""
    before, after = _limits(code)
    assert after == before <= 1000


def test_a_dependency_imported_before_farthing_cannot_leave_the_limit_raised() -> None:
    before, after = _limits("import eth_account, eth_tester\nimport farthing.jobs.server")
    assert before <= 1000 and after == 1000


@pytest.mark.parametrize(
    "value,host",
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("127.0.0.1:1", "127.0.0.1"),
        ("[::1]:80", "::1"),
        ("blog.example.", "blog.example"),
        ("localhost..", None),
        (".", None),
        ("evil.example@localhost", None),
        ("localhost:99999", None),
        ("localhost:80:80", None),
        ("[::1", None),
        ("", None),
        ("a b", None),
    ],
)
def test_host_of(value: str, host: str | None) -> None:
    assert host_of(value) == host


def test_allowed_hosts_refuses_a_public_bind_with_no_name() -> None:
    assert "localhost" in allowed_hosts("127.0.0.1")
    assert allowed_hosts("0.0.0.0", ["https://blog.example/x"]) == {"blog.example"}
    with pytest.raises(FarthingError, match="--public-url"):
        allowed_hosts("0.0.0.0")


@pytest.mark.anyio
async def test_host_guard_refuses_a_rebound_name_with_421() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("secret"))])
    guarded = HostGuard(app, hosts=allowed_hosts("127.0.0.1"))
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
        assert (await client.get("/")).text == "secret"
        assert (await client.get("/", headers={"host": "localhost:8080"})).status_code == 200
        refused = await client.get("/", headers={"host": "attacker.example"})
        assert refused.status_code == 421
        assert b"secret" not in refused.content
        assert refused.json()["error"] == "misdirected_request"
