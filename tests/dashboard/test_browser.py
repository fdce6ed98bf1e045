"""In Debian's chromium, operators decide approvals, read the true figures and see tampering.

Each test builds real books (tests.agents.conftest.make_world: memory chain,
a paywalled blog, a funded agent with SQLite books), serves the real
dashboard with uvicorn on 127.0.0.1, and drives it with Playwright. An
agent's purchase runs in a background thread and waits on its approval
request while the operator clicks; the outcome the agent reports is the
proof that the click reached it. Screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from farthing.agents.approvals import get_approval, list_approvals
from farthing.agents.outcome import PaymentOutcome, outcome_of
from farthing.dashboard import DashboardSettings
from farthing.dashboard.overview import money_of
from farthing.ledger.report import budget_report, spend_report
from farthing.wallet.chain import Chain
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World, make_world
from tests.dashboard.conftest import PASSWORDS, served, users_line

pytestmark = pytest.mark.browser


@pytest.fixture
def world(memory_chain: Chain, tmp_path: Path) -> Iterator[World]:
    made = make_world(memory_chain, tmp_path)
    yield made
    made.close()


def settings_for(world: World, **extra: Any) -> DashboardSettings:
    return DashboardSettings(
        database_url=world.database_url,
        paywall_database_url=f"sqlite:///{world.tmp_path / 'paywall.sqlite'}",
        refresh_s=0.5,
        verify_interval_s=0.5,
        **extra,
    )


class Purchase:
    """One purchase by the agent, in its own thread and event loop, as a real agent runs."""

    def __init__(self, world: World, slug: str) -> None:
        self.outcome: PaymentOutcome | None = None
        self._world, self._slug = world, slug
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def buy() -> PaymentOutcome | None:
            async with self._world.client(purpose="read about farthings") as http:
                response = await http.get(f"{BLOG}/posts/{self._slug}")
            return outcome_of(response)

        self.outcome = asyncio.run(buy())

    def wait(self, timeout_s: float = 30) -> PaymentOutcome:
        self._thread.join(timeout_s)
        assert self.outcome is not None, "the agent did not finish"
        return self.outcome


def wait_for_request(world: World) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        waiting = list_approvals(world.database, status="pending")
        if waiting:
            return waiting[0].id
        time.sleep(0.05)
    raise AssertionError("no approval request appeared")


def log_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/login")
    page.fill("input[name=user]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("form.login button")
    page.wait_for_url(f"{base}/")


def test_an_operator_approves_and_the_purchase_completes(
    world: World, browser: Any, tmp_path: Path
) -> None:
    world.set_policy(approval_above=PRICE_ATOMIC - 1, approval_timeout_s=60)
    purchase = Purchase(world, "quarter-penny")
    request_id = wait_for_request(world)
    with served(settings_for(world, users=users_line())) as base:
        page = browser.new_page()
        log_in(page, base, "ada")
        page.goto(f"{base}/approvals")
        row = page.locator(f"#approval-{request_id}")
        assert "quarter-penny" in row.inner_text()
        page.screenshot(path=str(tmp_path / "approvals.png"), full_page=True)
        row.locator("button.approve").click()
        page.wait_for_url(f"{base}/approvals?message=*")
        assert f"request {request_id} approved" in page.inner_text("#message")
        outcome = purchase.wait()
        assert outcome.status == "paid" and outcome.approval_id == request_id
        assert world.token.balance_of(world.merchant) == PRICE_ATOMIC
        page.goto(f"{base}/audit")
        assert "operator_approved" in page.inner_text("main")
        page.close()
    with world.database.read() as session:
        entry = session.execute(
            text("SELECT payload FROM ledger_audit_entry WHERE kind = 'operator_approved'")
        ).scalar_one()
    assert json.loads(entry)["actor"] == "ada"


def test_an_operator_denies_and_the_agent_reports_the_refusal(
    world: World, browser: Any, tmp_path: Path
) -> None:
    world.set_policy(approval_above=PRICE_ATOMIC - 1, approval_timeout_s=60)
    purchase = Purchase(world, "quarter-penny")
    request_id = wait_for_request(world)
    with served(settings_for(world)) as base:  # loopback, no credentials: the local operator
        page = browser.new_page()
        page.goto(f"{base}/approvals")
        row = page.locator(f"#approval-{request_id}")
        row.locator("input[name=note]").fill("not today")
        row.locator("button.deny").click()
        page.wait_for_url(f"{base}/approvals?message=*")
        assert f"request {request_id} denied" in page.inner_text("#message")
        page.close()
    outcome = purchase.wait()
    assert (outcome.status, outcome.reason, outcome.message) == (
        "not_paid",
        "approval_denied",
        "not today",
    )
    assert world.token.balance_of(world.merchant) == 0


def buy_now(world: World, slug: str) -> PaymentOutcome:
    # In a thread: Playwright's sync API keeps an event loop running in this one.
    outcome = Purchase(world, slug).wait()
    assert outcome is not None and outcome.status == "paid", outcome
    return outcome


def test_the_overview_equals_the_ledgers_report(world: World, browser: Any, tmp_path: Path) -> None:
    world.set_policy(daily_limit=100_000)
    for slug in ("quarter-penny", "copper-farthings"):
        buy_now(world, slug)
    now = time.time_ns()
    with world.database.read() as session:
        (budget,) = budget_report(session=session, now_ns=now)
        (by_agent,) = spend_report(session=session, by="agent")
        money = money_of(session)[budget.ledger]
    assert by_agent.posted == 2 * PRICE_ATOMIC and by_agent.payment_count == 2
    with served(settings_for(world)) as base:
        page = browser.new_page()
        page.goto(f"{base}/")
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        assert page.inner_text("#spent-today") == money.format(budget.daily_used)
        assert page.inner_text("#payments-last-hour") == str(by_agent.payment_count)
        row = page.locator("#table-spend tbody tr").first
        assert row.locator("td").first.inner_text() == "agent"
        assert row.locator(".c-spent_today").inner_text() == money.format(by_agent.posted)
        revenue = page.locator("#table-paywall_revenue").inner_text()
        assert "quarter-penny" in revenue and "copper-farthings" in revenue
        exported = page.request.get(f"{base}/export/spend.json").json()
        assert exported["rows"][0]["spent_today_atomic"] == str(budget.daily_used)
        assert exported["rows"][0]["daily_limit_atomic"] == "100000"
        page.locator("#table-spend a", has_text="agent").click()
        page.wait_for_url(f"{base}/agents/agent")
        payments = page.locator("#table-payments tbody tr")
        assert payments.count() == 2
        assert "posted" in payments.first.inner_text() and "0x" in payments.first.inner_text()
        page.screenshot(path=str(tmp_path / "agent.png"), full_page=True)
        # Live: a third purchase shows up without a reload.
        buy_now(world, "withdrawn-1960")
        page.goto(f"{base}/")
        # A locator, not wait_for_function: its polling evaluates a string,
        # which the dashboard's strict CSP (no unsafe-eval) refuses.
        page.locator("#payments-last-hour").filter(has_text=re.compile(r"^3$")).wait_for(
            timeout=10_000
        )
        page.close()


def test_a_tampered_row_turns_the_audit_panel_red(
    world: World, browser: Any, tmp_path: Path
) -> None:
    buy_now(world, "quarter-penny")
    with served(settings_for(world)) as base:
        page = browser.new_page()
        page.goto(f"{base}/audit")
        page.wait_for_selector("#audit-panel.audit-ok", timeout=10_000)
        with world.database.write() as session:
            victim = session.execute(
                text("SELECT id FROM ledger_transfer WHERE tx_hash IS NOT NULL LIMIT 1")
            ).scalar_one()
            # An attacker with the database file: the immutability trigger goes first.
            session.execute(text("DROP TRIGGER ledger_transfer_no_update"))
            session.execute(
                text("UPDATE ledger_transfer SET amount = 1 WHERE id = :id"), {"id": victim}
            )
        page.click("#verify-now")
        page.wait_for_selector("#audit-panel.audit-broken", timeout=10_000)
        problems = page.inner_text("#problems")
        assert f"transfer_altered (transfer:{victim})" in problems
        page.screenshot(path=str(tmp_path / "audit-broken.png"), full_page=True)
        page.goto(f"{base}/")
        assert "audit-broken" in (page.get_attribute("#audit-tile", "class") or "")
        page.close()


def test_a_viewer_cannot_approve(world: World, browser: Any) -> None:
    world.set_policy(approval_above=PRICE_ATOMIC - 1, approval_timeout_s=5)
    purchase = Purchase(world, "quarter-penny")
    request_id = wait_for_request(world)
    with served(settings_for(world, users=users_line())) as base:
        page = browser.new_page()
        log_in(page, base, "vic")
        page.goto(f"{base}/approvals")
        row = page.locator(f"#approval-{request_id}")
        assert row.locator("button").count() == 0
        assert "viewers cannot decide" in row.inner_text()
        # Forging the form with a valid CSRF token still needs the approver role.
        csrf = page.get_attribute("input[name=csrf_token]", "value")
        response = page.request.post(
            f"{base}/approvals/{request_id}/approve", form={"csrf_token": csrf or ""}
        )
        assert response.status == 403 and "viewer" in response.text()
        page.close()
    # Nobody approved it: it waits, or has expired by now on a slow machine.
    assert get_approval(world.database, request_id).status in ("pending", "expired")  # type: ignore[union-attr]
    outcome = purchase.wait()
    assert (outcome.status, outcome.reason) == ("not_paid", "approval_timeout")


def test_a_post_without_the_csrf_token_is_refused(world: World, browser: Any) -> None:
    world.set_policy(approval_above=PRICE_ATOMIC - 1, approval_timeout_s=5)
    purchase = Purchase(world, "quarter-penny")
    request_id = wait_for_request(world)
    with served(settings_for(world)) as base:
        page = browser.new_page()
        page.goto(f"{base}/approvals")  # a session, and its cookie, exist
        for form in ({}, {"csrf_token": "forged"}):
            response = page.request.post(f"{base}/approvals/{request_id}/approve", form=form)
            assert response.status == 403 and "CSRF" in response.text()
        page.close()
    assert get_approval(world.database, request_id).status in ("pending", "expired")  # type: ignore[union-attr]
    assert purchase.wait().reason == "approval_timeout"


@pytest.mark.anvil
def test_run_now_reconciles_with_the_chain(
    anvil_chain: Chain, browser: Any, tmp_path: Path
) -> None:
    made = make_world(anvil_chain, tmp_path)
    try:
        buy_now(made, "quarter-penny")
        settings = settings_for(made, rpc_url=anvil_chain.rpc_url, token=made.asset.address)
        with served(settings) as base:
            page = browser.new_page()
            page.goto(f"{base}/reconciliation")
            assert "No reconciliation" in page.inner_text("#last-run")
            page.click("#run-now")
            page.wait_for_url(f"{base}/reconciliation?message=*")
            assert "found 0 breaks" in page.inner_text("#message")
            assert "0 break(s)" in page.inner_text("#last-run")
            page.screenshot(path=str(tmp_path / "reconciliation.png"), full_page=True)
            page.close()
    finally:
        made.close()
