"""Budget limits refuse with their own reason, in the same database transaction as the reservation.

Each limit (total, payment cap, rolling daily limit, payee cap, asset
allowlist) is driven to its edge on both backends with an injected clock, so
the rolling window's hour boundaries are exact.
"""

from __future__ import annotations

from farthing.ledger import (
    BudgetPolicy,
    NewTransfer,
    PaymentDetails,
    get_budget,
    register_asset,
    set_budget,
)

HOUR = 3_600 * 10**9
T0 = 1_750_000_000 * 10**9 // HOUR * HOUR  # the start of an hour
USDC = ("eip155:8453", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913")


def test_total_budget_refuses_with_exceeds_budget(books) -> None:
    assert books.transfer(books.reserve(600_000), books.reserve(400_000)) == ["ok", "ok"]
    assert books.transfer(books.reserve(1)) == ["exceeds_budget"]


def test_payment_cap(books) -> None:
    assert books.set_policy(payment_cap=500) == "ok"
    assert books.transfer(books.reserve(500), books.reserve(501)) == ["ok", "exceeds_payment_cap"]


def test_daily_limit_rolls_by_the_hour(books) -> None:
    assert books.set_policy(daily_limit=1_000) == "ok"
    assert books.transfer(books.reserve(700), now_ns=T0 + 10) == ["ok"]
    assert books.transfer(books.reserve(301), now_ns=T0 + 2 * HOUR) == ["exceeds_daily_limit"]
    assert books.transfer(books.reserve(300), now_ns=T0 + 2 * HOUR) == ["ok"]
    # 24 whole hours later the first spend still counts: windows err long.
    assert books.transfer(books.reserve(1), now_ns=T0 + 24 * HOUR) == ["exceeds_daily_limit"]
    # In hour 25 the first 700 has left the window; the 300 from hour 2 has not.
    assert books.transfer(books.reserve(700), now_ns=T0 + 25 * HOUR) == ["ok"]
    assert books.transfer(books.reserve(1), now_ns=T0 + 25 * HOUR) == ["exceeds_daily_limit"]


def test_void_and_partial_post_give_daily_headroom_back(books) -> None:
    assert books.set_policy(daily_limit=1_000) == "ok"
    first, second = books.reserve(600), books.reserve(400)
    assert books.transfer(first, second, now_ns=T0) == ["ok", "ok"]
    assert books.transfer(books.reserve(1), now_ns=T0) == ["exceeds_daily_limit"]
    void = NewTransfer.void(id=books.new_id(), pending_id=first.id)
    post = NewTransfer.post(id=books.new_id(), pending_id=second.id, amount=100)
    assert books.transfer(void, post, now_ns=T0 + HOUR) == ["ok", "ok"]
    assert books.transfer(books.reserve(900), now_ns=T0 + HOUR) == ["ok"]
    assert books.transfer(books.reserve(1), now_ns=T0 + HOUR) == ["exceeds_daily_limit"]


def test_payee_daily_cap_is_per_payee(books) -> None:
    assert books.set_policy(payee_daily_cap=300) == "ok"
    assert books.transfer(books.reserve(300), now_ns=T0) == ["ok"]
    assert books.transfer(books.reserve(1), now_ns=T0) == ["exceeds_payee_daily_cap"]
    assert books.transfer(books.reserve(300, payee=books.PAYEE_2), now_ns=T0) == ["ok"]


def test_asset_allowlist(books) -> None:
    asset_id = f"{USDC[0]}/erc20:{USDC[1]}"
    other_token = "0x" + "22" * 20
    with books.db.write() as session:
        for token in (USDC[1], other_token):
            register_asset(
                session=session,
                asset_id=f"{USDC[0]}/erc20:{token}",
                ledger=1,
                decimals=6,
                symbol="USDC",
            )
    assert books.set_policy(asset_allowlist=frozenset({asset_id})) == "ok"
    usdc = PaymentDetails(network=USDC[0], token_address=USDC[1])
    other = PaymentDetails(network=USDC[0], token_address=other_token)
    assert books.transfer(books.reserve(10, payment=usdc)) == ["ok"]
    assert books.transfer(books.reserve(10, payment=other)) == ["asset_not_allowed"]
    assert books.transfer(books.reserve(10)) == [
        "asset_not_allowed"
    ]  # an unnamed asset is not allowed


def test_limits_added_later_count_earlier_spend(books) -> None:
    assert books.transfer(books.reserve(800), now_ns=T0) == ["ok"]
    assert books.set_policy(daily_limit=1_000) == "ok"
    assert books.transfer(books.reserve(201), now_ns=T0 + 1) == ["exceeds_daily_limit"]


def test_set_budget_refusals(books) -> None:
    with books.db.write() as session:
        assert set_budget(
            session=session, policy=BudgetPolicy(account_id=books.PAYEE, agent_id="a")
        ) == ("account_must_limit_debits")
        assert (
            set_budget(session=session, policy=BudgetPolicy(account_id=999, agent_id="a"))
            == "account_not_found"
        )
        assert set_budget(
            session=session, policy=BudgetPolicy(account_id=books.BUDGET, agent_id=" ")
        ) == ("agent_id_must_not_be_empty")
        negative = BudgetPolicy(account_id=books.BUDGET, agent_id="a", daily_limit=-1)
        assert set_budget(session=session, policy=negative) == "limit_must_not_be_negative"
        assert get_budget(session=session, account_id=books.BUDGET) == BudgetPolicy(
            account_id=books.BUDGET, agent_id="agent-1"
        )
