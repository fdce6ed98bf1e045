"""Payments above the approval threshold wait for a person, who denies one and approves the next.

The agent pays the real paywalled blog (memory chain, SQLite books) with a
policy that asks for approval above a threshold. While its payment waits, the
test decides it the way an operator would: `farthing agent approvals deny` and
`approve`, run as real processes against the same database. A denied or
unanswered request pays nothing and reserves nothing; an approved one pays
exactly the approved terms.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio.to_thread
import pytest

from farthing.agents.approvals import Approval, decide_approval, get_approval, list_approvals
from farthing.agents.errors import ApprovalError
from farthing.agents.outcome import PaymentOutcome, outcome_of
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World
from tests.conftest import CliResult, cli_env, run_farthing

pytestmark = pytest.mark.anyio


async def buy(world: World, slug: str) -> PaymentOutcome:
    async with world.client(purpose="read about farthings") as http:
        response = await http.get(f"{BLOG}/posts/{slug}")
    outcome = outcome_of(response)
    assert outcome is not None
    return outcome


async def pending_request(world: World) -> Approval:
    for _ in range(200):
        waiting = list_approvals(world.database, status="pending")
        if waiting:
            return waiting[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval request appeared")


async def operator(world: World, tmp_path: Path, *args: str) -> CliResult:
    argv = ["agent", "approvals", *args, "--database-url", world.database_url]
    return await anyio.to_thread.run_sync(lambda: run_farthing(argv, env=cli_env(tmp_path)))


async def test_an_approval_is_denied_then_approved(world: World, tmp_path: Path) -> None:
    world.set_policy(approval_above=PRICE_ATOMIC - 1, approval_timeout_s=120)

    waiting = asyncio.create_task(buy(world, "quarter-penny"))
    request = await pending_request(world)
    assert (request.amount, request.pay_to, request.task_id) == (
        PRICE_ATOMIC,
        world.merchant,
        "task-1",
    )
    assert request.resource == f"{BLOG}/posts/quarter-penny"
    assert request.purpose == "read about farthings"
    assert world.open_reservations() == []  # nothing is reserved while a person decides
    listed = await operator(world, tmp_path, "list", "--json")
    assert [a["id"] for a in listed.json()["approvals"]] == [request.id]
    denied = await operator(world, tmp_path, "deny", str(request.id), "--note", "too dear")
    assert denied.code == 0, denied.stderr
    outcome = await waiting
    assert (outcome.status, outcome.reason, outcome.message) == (
        "not_paid",
        "approval_denied",
        "too dear",
    )
    assert outcome.approval_id == request.id
    assert world.open_reservations() == [] and world.token.balance_of(world.merchant) == 0

    waiting = asyncio.create_task(buy(world, "quarter-penny"))
    second = await pending_request(world)
    assert second.id != request.id
    approved = await operator(world, tmp_path, "approve", str(second.id))
    assert approved.code == 0, approved.stderr
    assert "approved request" in approved.stdout
    outcome = await waiting
    assert outcome.status == "paid" and outcome.approval_id == second.id
    assert world.token.balance_of(world.merchant) == PRICE_ATOMIC

    again = await operator(world, tmp_path, "approve", str(second.id))
    assert again.code == 1
    assert again.stderr.strip() == f"error: approval request {second.id} is already approved"


async def test_an_unanswered_approval_expires_and_pays_nothing(world: World) -> None:
    world.set_policy(approval_above=0, approval_timeout_s=1)
    outcome = await buy(world, "quarter-penny")
    assert (outcome.status, outcome.reason) == ("not_paid", "approval_timeout")
    assert outcome.approval_id is not None
    expired = get_approval(world.database, outcome.approval_id)
    assert expired is not None and expired.status == "expired"
    with pytest.raises(ApprovalError, match="already expired"):
        decide_approval(world.database, outcome.approval_id, approve=True)
    assert world.open_reservations() == [] and world.token.balance_of(world.merchant) == 0


async def test_payments_at_or_below_the_threshold_need_no_approval(world: World) -> None:
    world.set_policy(approval_above=PRICE_ATOMIC)
    outcome = await buy(world, "quarter-penny")
    assert outcome.status == "paid" and outcome.approval_id is None
    assert list_approvals(world.database) == []
