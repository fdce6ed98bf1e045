"""Agent commands write a payment (transfer) id the one way: 32 lower-case hex digits.

``PaymentOutcome.describe`` is checked directly; then, on the real dev chain
(`farthing chain dev`), an open reservation is booked in the agent's own
ledger and `farthing agent status` (table and ``--json``-free text) and
`farthing agent resolve --json` run as real processes: each names the
payment by the same text the dashboard and `farthing ledger export` show.
"""

from __future__ import annotations

import time

import pytest

from farthing.agents.books import AgentBooks
from farthing.agents.outcome import PaymentOutcome
from farthing.ledger import (
    LedgerDatabase,
    LedgerSettings,
    PaymentDetails,
    format_transfer_id,
    reserve_payment,
)
from tests.agents.conftest import Site

SMALL_ID = 0x2A  # leading zeros are part of the one form


def test_a_possible_spend_names_its_payment_in_the_one_form() -> None:
    outcome = PaymentOutcome(
        "possible_spend", "http://x.test/a", reason="settlement_unknown", payment_id=SMALL_ID
    )
    assert f"payment {format_transfer_id(SMALL_ID)} " in outcome.describe()


@pytest.mark.anvil
def test_agent_status_and_resolve_print_the_one_form(site: Site) -> None:
    first = site.farthing("agent", "status", "--json")
    assert first.code == 0, first.stderr
    database = LedgerDatabase(LedgerSettings(data_dir=site.data_dir))
    try:
        books = AgentBooks(database, agent_id="agent", asset=site.asset).ensure()
        with database.write() as session:
            payee = books.ensure_payee(session, site.merchant)
            result = reserve_payment(
                session=session, payment_id=SMALL_ID, budget_account_id=books.budget_account_id,
                payee_account_id=payee, amount=1_000, ledger=1,
                payment=PaymentDetails(payee_address=site.merchant, resource=f"{site.url}/a",
                                       valid_before=int(time.time()) + 3_600),
            )  # fmt: skip
        assert result.value == "ok", result
    finally:
        database.dispose()
    status = site.farthing("agent", "status")
    assert status.code == 0, status.stderr
    assert f"possible spend: payment {format_transfer_id(SMALL_ID)} " in status.stdout
    resolved = site.farthing("agent", "resolve", "--json")
    ids = [r["payment_id"] for r in resolved.json()["resolutions"]]
    assert ids == [format_transfer_id(SMALL_ID)], resolved.stdout + resolved.stderr
