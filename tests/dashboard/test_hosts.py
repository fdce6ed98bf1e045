"""The dashboard answers only its own host names, which stops DNS rebinding (issue #22, finding 2).

A real ``farthing dashboard`` process on 127.0.0.1 with no users (the local
user approves) is asked, as a rebound hostile page would ask it, with a
forged ``Host``: it refuses to show ``/approvals`` (so no CSRF token leaks)
and refuses the approve POST, while the same requests with the loopback names
work. In-process checks cover ``--public-url`` and ``--allowed-host``, and the
command refuses a bind beyond loopback without a public URL in one line.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from farthing.agents.approvals import get_approval, request_approval
from farthing.dashboard import DashboardConfigError, DashboardSettings, create_app
from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.wallet.money import Asset
from tests import zygote
from tests.conftest import cli_env, free_port, run_farthing
from tests.dashboard.conftest import users_line

EVIL = "rebind.evil.example"
PAYEE = "0x" + "22" * 20


@pytest.fixture
def books(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'books.sqlite'}"
    database = LedgerDatabase(LedgerSettings(database_url=url))
    upgrade_database(database)
    database.dispose()
    yield url


def waiting_request(books: str) -> int:
    database = LedgerDatabase(LedgerSettings(database_url=books))
    try:
        asset = Asset(network="eip155:31337", address="0x" + "11" * 20, decimals=6,
                      name="USDC", version="2")  # fmt: skip
        made = request_approval(database, agent_id="bot", asset=asset, amount=250_000,
                                pay_to=PAYEE, resource="https://blog.example/posts/a")  # fmt: skip
        return made.id
    finally:
        database.dispose()


def status_of(books: str, approval_id: int) -> str:
    database = LedgerDatabase(LedgerSettings(database_url=books))
    try:
        found = get_approval(database, approval_id)
        assert found is not None
        return found.status
    finally:
        database.dispose()


@pytest.fixture
def dashboard_process(books: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = zygote.spawn(
        [sys.executable, "-m", "farthing", "dashboard", "--database-url", books,
         "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts Python slowly
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_a_rebound_page_cannot_read_approvals_or_approve(
    books: str, dashboard_process: str
) -> None:
    approval_id = waiting_request(books)
    port = dashboard_process.rsplit(":", 1)[1]
    with httpx.Client(base_url=dashboard_process, timeout=10) as evil:
        # After rebinding, the hostile page's requests go to 127.0.0.1 but name its own host.
        forged = {"host": f"{EVIL}:{port}"}
        page = evil.get("/approvals", headers=forged)
        assert page.status_code == 421 and "csrf_token" not in page.text
        assert "csrf_token" not in evil.get("/", headers=forged).text
        refused = evil.post(f"/approvals/{approval_id}/approve", headers=forged,
                            data={"csrf_token": "anything"})  # fmt: skip
        assert refused.status_code == 421
    assert status_of(books, approval_id) == "pending"
    # The operator's own browser, on a loopback name, still works.
    for name in ("127.0.0.1", "localhost"):
        with httpx.Client(base_url=f"http://{name}:{port}", timeout=10) as own:
            page = own.get("/approvals")
            assert page.status_code == 200
    with httpx.Client(base_url=dashboard_process, timeout=10) as own:
        page = own.get("/approvals")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        done = own.post(f"/approvals/{approval_id}/approve", data={"csrf_token": token.group(1)})
        assert done.status_code == 303
    assert status_of(books, approval_id) == "approved"


def asgi(settings: DashboardSettings, base_url: str) -> TestClient:
    return TestClient(create_app(settings, start_verifier=False), base_url=base_url)


def test_a_public_url_and_allowed_hosts_name_what_is_answered(books: str) -> None:
    settings = DashboardSettings(database_url=books, host="0.0.0.0", users=users_line(),
                                 public_url="https://books.example.com",
                                 allowed_hosts=["ops.internal:8700"])  # fmt: skip
    for base, status in [("https://books.example.com", 200), ("http://ops.internal:8700", 200),
                         ("http://127.0.0.1:8700", 421), ("http://evil.example", 421)]:  # fmt: skip
        with asgi(settings, base) as http:
            assert http.get("/login").status_code == status, base
    # On loopback the public URL's host is answered besides the loopback names.
    local = DashboardSettings(database_url=books, public_url="http://dash.test:8700")
    for base, status in [("http://dash.test:8700", 200), ("http://[::1]:8700", 200),
                         ("http://testserver", 421)]:  # fmt: skip
        with asgi(local, base) as http:
            assert http.get("/healthz").status_code == status, base


def test_a_bind_beyond_loopback_needs_a_public_url(books: str, tmp_path: Path) -> None:
    with pytest.raises(DashboardConfigError, match="--public-url"):
        create_app(DashboardSettings(database_url=books, host="0.0.0.0", users=users_line()))
    with pytest.raises(DashboardConfigError, match="public URL"):
        create_app(DashboardSettings(database_url=books, public_url="books.example.com"))
    env = cli_env(tmp_path, FARTHING_DASHBOARD_USERS=users_line())
    refused = run_farthing(["dashboard", "--database-url", books, "--host", "0.0.0.0"], env=env)
    assert refused.code == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--public-url" in lines[0], refused.stderr
