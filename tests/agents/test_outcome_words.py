"""A payment outcome always says why in words, and says it once.

Outcomes are built as the paying client builds them, for a policy refusal
(which comes with no detail) and for a seller that answered 500 after the
payment was sent; their messages and sentences are read as a user reads them.
"""

from __future__ import annotations

from farthing.agents.outcome import REASONS, PaymentOutcome


def test_a_refusal_without_a_detail_carries_the_reason_sentence() -> None:
    outcome = PaymentOutcome("not_paid", "http://x.test/a", reason="exceeds_budget", amount=5)
    assert outcome.message == REASONS["exceeds_budget"]
    assert outcome.describe().count(REASONS["exceeds_budget"]) == 1


def test_a_possible_spend_says_may_have_been_spent_once() -> None:
    outcome = PaymentOutcome(
        "possible_spend", "http://x.test/a", reason="settlement_unknown", payment_id=7
    )
    sentence = outcome.describe()
    assert sentence.count("may have been spent") == 1, sentence
    detailed = PaymentOutcome(
        "possible_spend",
        "http://x.test/a",
        reason="settlement_unknown",
        message="the seller answered 500",
        payment_id=7,
    )
    assert detailed.describe().count("may have been spent") == 1
    assert "(the seller answered 500)" in detailed.describe()
