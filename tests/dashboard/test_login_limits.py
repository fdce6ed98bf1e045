"""Logging in cannot be used to log others out, lock them out, race the limit or probe names.

Issue #22, findings 4, 5 and 9, each over real HTTP (httpx.ASGITransport, with
the client address set per attacker) on real SQLite books:

* cookie-less visitors create no server-side session, so a flood of them
  never evicts the approver's session (login mode) or the local operator's
  (loopback mode);
* failed logins are limited per account and per client address, so failures
  for another name or from another client do not lock the approver out, and
  an attempt is counted before its password is checked, so 40 concurrent
  wrong passwords get at most the limit's worth of checks;
* an unknown name is checked against a dummy hash with exactly the scrypt
  parameters of the real ones (a correctness check of what is hashed, not a
  timing test).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.dashboard import DashboardSettings, create_app, hash_password
from farthing.dashboard.auth import authenticate, dummy_hash, load_users
from farthing.dashboard.logins import LoginLimiter
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from tests.dashboard.conftest import PASSWORDS, users_line

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


def client(app: Any, address: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def log_in(http: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    page = await http.get("/login")
    return await http.post(
        "/login", data={"csrf_token": csrf_of(page.text), "user": name, "password": password}
    )


async def test_anonymous_visitors_do_not_log_the_approver_out(books: str) -> None:
    settings = DashboardSettings(database_url=books, users=users_line(), session_count_max=50)
    app = create_app(settings, start_verifier=False)
    async with client(app) as ada, client(app, "10.6.6.6") as flood:
        assert (await log_in(ada, "ada", PASSWORDS["ada"])).status_code == 303
        for _ in range(200):
            flood.cookies.clear()
            assert (await flood.get("/login")).status_code == 200
            assert (await flood.get("/approvals")).status_code == 303
        page = await ada.get("/approvals")
        assert page.status_code == 200 and "ada (approver)" in page.text
    assert len(app.state.sessions) == 1


async def test_cookie_less_requests_do_not_evict_the_local_operator(books: str) -> None:
    app = create_app(DashboardSettings(database_url=books, session_count_max=50),
                     start_verifier=False)  # fmt: skip
    async with client(app, "127.0.0.1") as operator, client(app, "127.0.0.1") as other:
        token = csrf_of((await operator.get("/audit")).text)
        for _ in range(200):
            other.cookies.clear()
            assert (await other.get("/")).status_code == 200
        done = await operator.post("/audit/verify", data={"csrf_token": token})
        assert done.status_code == 303


async def test_failures_for_another_name_or_client_do_not_lock_the_approver_out(
    books: str,
) -> None:
    settings = DashboardSettings(database_url=books, users=users_line(),
                                 login_attempts_per_minute_max=10)  # fmt: skip
    app = create_app(settings, start_verifier=False)
    async with client(app, "10.6.6.6") as attacker:
        for i in range(10):
            assert (await log_in(attacker, "ghost", f"guess {i}")).status_code == 401
        # The attacker's address is now limited, whatever name it tries, known or not.
        for name in ("ghost", "another-ghost", "ada"):
            limited = await log_in(attacker, name, "guess")
            assert limited.status_code == 429 and "too many failed logins" in limited.text
    async with client(app, "10.0.0.1") as ada:
        assert (await log_in(ada, "ada", PASSWORDS["ada"])).status_code == 303
    # Ten failures for one account from many addresses limit that account only.
    for i in range(10):
        async with client(app, f"10.7.0.{i}") as spread:
            assert (await log_in(spread, "vic", "guess")).status_code == 401
    async with client(app, "10.7.1.1") as fresh:
        assert (await log_in(fresh, "vic", PASSWORDS["vic"])).status_code == 429
        assert (await log_in(fresh, "ada", PASSWORDS["ada"])).status_code == 303


async def test_concurrent_wrong_passwords_are_checked_at_most_the_limit(books: str) -> None:
    line = f"ada approver {hash_password(PASSWORDS['ada'], n=2**14)}"
    settings = DashboardSettings(database_url=books, users=line, login_attempts_per_minute_max=10)
    app = create_app(settings, start_verifier=False)
    async with client(app, "10.6.6.6") as attacker:
        token = csrf_of((await attacker.get("/login")).text)
        form = {"csrf_token": token, "user": "ada"}
        answers = await asyncio.gather(
            *(attacker.post("/login", data={**form, "password": f"guess {i}"}) for i in range(40))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) == 10 and statuses.count(429) == 30, statuses


@pytest.mark.parametrize("n", [2**10, 2**15])
def test_an_unknown_name_is_hashed_with_the_real_parameters(
    books: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = f"ada approver {hash_password(PASSWORDS['ada'], n=n)}"
    users = load_users(DashboardSettings(database_url=books, users=line))
    assert dummy_hash(users).split("$")[1:4] == users["ada"].password_hash.split("$")[1:4]
    seen: list[tuple[int, int, int, int, int]] = []
    real_scrypt = hashlib.scrypt

    def recording(password: bytes, **kw: Any) -> bytes:
        seen.append((kw["n"], kw["r"], kw["p"], len(kw["salt"]), kw["dklen"]))
        return real_scrypt(password, **kw)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    assert authenticate(users, "ghost", "guess") is None
    assert authenticate(users, "ada", "guess") is None
    assert len(seen) == 2 and seen[0] == seen[1] == (n, 8, 1, 16, 32)


def test_the_limit_table_is_bounded_and_a_success_is_not_a_failure() -> None:
    now = [0.0]
    limiter = LoginLimiter(attempts_max=2, keys_max=4, clock=lambda: now[0])
    for i in range(1_000):
        assert limiter.begin(f"name-{i}", f"10.0.{i // 256}.{i % 256}") is not None
    assert len(limiter) <= 4
    first = limiter.begin("ada", "10.9.9.9")
    assert first is not None
    limiter.succeeded(first)
    assert limiter.begin("ada", "10.9.9.9") is not None
    assert limiter.begin("ada", "10.9.9.8") is not None
    assert limiter.begin("ada", "10.9.9.7") is None  # two failures: ada is limited
    now[0] += 60
    assert limiter.begin("ada", "10.9.9.7") is not None  # a new minute
