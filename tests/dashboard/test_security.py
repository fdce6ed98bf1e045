"""The dashboard's gate, over real HTTP (httpx.ASGITransport) on real SQLite books.

It proves each rule of the issue's security list with a request a browser or
an attacker would send: non-loopback binds need credentials, a login sets an
HttpOnly SameSite cookie, roles and CSRF are checked on every POST, no
secret reaches a page, and every action lands in the audit log with its actor
while `farthing ledger verify` still passes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from farthing.dashboard import DashboardConfigError, DashboardSettings, create_app, load_users
from farthing.dashboard.app import LOGIN_COOKIE_NAME
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database, verify
from tests.dashboard.conftest import PASSWORDS, users_line


@pytest.fixture
def books(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'books.sqlite'}"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    database.dispose()
    yield url


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make(settings: DashboardSettings) -> httpx.AsyncClient:
    app = create_app(settings, start_verifier=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def log_in(http: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    page = await http.get("/login")
    return await http.post(
        "/login", data={"csrf_token": csrf_of(page.text), "user": name, "password": password}
    )


async def test_binding_beyond_loopback_needs_credentials(books: str) -> None:
    with pytest.raises(DashboardConfigError, match="needs a login"):
        create_app(DashboardSettings(database_url=books, host="0.0.0.0"))
    with pytest.raises(DashboardConfigError, match="scrypt hash"):
        load_users(DashboardSettings(database_url=books, users="ada approver plaintext"))


async def test_login_sets_a_safe_cookie_and_roles_decide(books: str) -> None:
    settings = DashboardSettings(database_url=books, host="0.0.0.0", users=users_line(),
                                 public_url="http://books.example", allowed_hosts=["127.0.0.1"])  # fmt: skip
    async with make(settings) as http:
        assert (await http.get("/")).status_code == 303  # to the login page
        wrong = await log_in(http, "ada", "guess")
        assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
        ok = await log_in(http, "ada", PASSWORDS["ada"])
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = await http.get("/")
        assert page.status_code == 200 and "ada (approver)" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    async with make(settings) as http:
        await log_in(http, "vic", PASSWORDS["vic"])
        page = await http.get("/reconciliation")
        assert "Run now" not in page.text
        refused = await http.post("/reconciliation/run", data={"csrf_token": csrf_of(page.text)})
        assert refused.status_code == 403 and "viewer" in refused.text


async def test_a_post_without_csrf_is_refused_and_a_login_needs_it_too(books: str) -> None:
    async with make(DashboardSettings(database_url=books, users=users_line())) as http:
        await http.get("/login")
        for data in ({"user": "ada", "password": PASSWORDS["ada"]}, {"csrf_token": "x"}):
            refused = await http.post("/login", data=data)
            assert refused.status_code == 403 and "CSRF" in refused.text
        assert LOGIN_COOKIE_NAME in http.cookies
        # The login form's cookie is not its CSRF token.
        forged = await http.post("/login", data={"csrf_token": http.cookies[LOGIN_COOKIE_NAME]})
        assert forged.status_code == 403


async def test_no_secret_is_rendered(tmp_path: Path, books: str) -> None:
    line = users_line()
    settings = DashboardSettings(
        database_url=books,
        paywall_database_url="postgresql://farthing:db-secret-pw@127.0.0.1:1/paywall",
        rpc_url="https://base.example/v2/rpc-secret-key?apikey=query-secret",
        users=line,
    )
    async with make(settings) as http:
        await log_in(http, "ada", PASSWORDS["ada"])
        for path in ("/", "/approvals", "/reconciliation", "/audit", "/export/audit.json"):
            text = (await http.get(path)).text
            for secret in ("db-secret-pw", "rpc-secret-key", "query-secret", "scrypt$",
                           PASSWORDS["ada"]):  # fmt: skip
                assert secret not in text, (path, secret)
        assert "https://base.example" in (await http.get("/")).text


async def test_every_action_is_logged_with_its_actor(books: str) -> None:
    async with make(DashboardSettings(database_url=books, users=users_line())) as http:
        await log_in(http, "ada", PASSWORDS["ada"])
        page = await http.get("/approvals")
        unknown = await http.post("/approvals/999/approve", data={"csrf_token": csrf_of(page.text)})
        assert unknown.status_code == 409 and "no approval request 999" in unknown.text
        bad = await http.post("/approvals/abc/approve", data={"csrf_token": csrf_of(page.text)})
        assert bad.status_code == 400
        run = await http.post("/reconciliation/run", data={"csrf_token": csrf_of(page.text)})
        assert run.status_code == 409 and "--rpc-url" in run.text
        assert (await http.get("/agents/nobody")).status_code == 404
        log = (await http.get("/export/audit.json")).json()
    kinds = [(row["kind"], row["payload"]) for row in log["rows"]]
    assert [k for k, _ in kinds] == ["operator_login", "operator_approve_refused"]
    assert all('"actor":"ada"' in payload for _, payload in kinds)
    database = LedgerDatabase(LedgerSettings(database_url=books))
    with database.read() as session:
        assert verify(session=session).ok
    database.dispose()


def test_the_command_refuses_an_open_bind_in_one_line(books: str, tmp_path: Path) -> None:
    from tests.conftest import cli_env, run_farthing

    env = cli_env(tmp_path)
    refused = run_farthing(["dashboard", "--database-url", books, "--host", "0.0.0.0"], env=env)
    assert refused.code == 1
    assert len(refused.stderr.strip().splitlines()) == 1 and "needs a login" in refused.stderr
    hashed = run_farthing(["dashboard", "--hash-password"], env=env, stdin="correct horse\n")
    assert hashed.code == 0 and hashed.stdout.startswith("scrypt$")
    users = tmp_path / "users.txt"
    users.write_text(f"ada approver {hashed.stdout.strip()}\n")
    loaded = load_users(DashboardSettings(database_url=books, users_file=users))
    assert loaded["ada"].check("correct horse") and not loaded["ada"].check("wrong")


async def test_a_form_over_the_bound_is_refused_before_it_is_read_whole(books: str) -> None:
    async with make(DashboardSettings(database_url=books)) as http:
        token = csrf_of((await http.get("/audit")).text)
        big = b"csrf_token=" + token.encode() + b"&pad=" + b"p" * 20_000
        refused = await http.post("/audit/verify", content=big)
        assert refused.status_code == 413 and "16 KiB" in refused.text

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
            yield b"csrf_token=" + token.encode() + b"&pad="
            for _ in range(40):
                yield b"p" * 1024

        refused = await http.post("/audit/verify", content=chunks())
        assert refused.status_code == 413
        lying = await http.post("/audit/verify", content=b"x", headers={"content-length": "-1"})
        assert lying.status_code in (400, 413)
        done = await http.post("/audit/verify", data={"csrf_token": token})
        assert done.status_code == 303
