"""The paying httpx client answers a 402 once, reserving before it signs, and books the answer.

The first tests drive ``PaymentAuth.sync_auth_flow`` by hand, the way httpx's
own tests drive DigestAuth: they feed it hand-made 402, 200, 402-refusal and
503 responses and check the request it yields next and the agent's books in a
real SQLite ledger (the memory chain is real too: it is asked whether the
authorization was used). The last tests pay the real paywalled blog, in
process, on the memory chain and on anvil, and reconcile the books with the
chain.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx
import pytest

from farthing.agents.client import PaymentAuth
from farthing.agents.outcome import outcome_of
from farthing.agents.payer import Intent, derive_nonce
from farthing.agents.reservations import booked_payments
from farthing.paywall.wire import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResult,
    decode_payment_signature,
)
from tests.agents.conftest import BLOG, PRICE_ATOMIC, World

URL = f"{BLOG}/posts/quarter-penny"
TX = "0x" + "ab" * 32


def offer(world: World, amount: int = PRICE_ATOMIC) -> PaymentRequirements:
    return PaymentRequirements(
        network=world.asset.network,
        asset=world.asset.address,
        amount=amount,
        pay_to=world.merchant,
        max_timeout_seconds=300,
        token_name=world.asset.name,
        token_version=world.asset.version,
    )


def challenge(world: World, *, error: str | None = None) -> httpx.Response:
    required = PaymentRequired(ResourceInfo(URL, "a post", "text/html"), (offer(world),), error)
    return httpx.Response(402, headers={"PAYMENT-REQUIRED": required.header()}, json={})


def settled(world: World, *, success: bool = True, reason: str | None = None) -> httpx.Response:
    result = SettleResult(
        success=success,
        network=world.asset.network,
        transaction=TX if success else "",
        payer=world.agent.address,
        reason=reason,
    )
    status = 200 if success else (503 if reason == "settlement_pending" else 402)
    return httpx.Response(status, headers={"PAYMENT-RESPONSE": result.header()}, text="paid")


def start(
    world: World, **intent: object
) -> tuple[Generator[httpx.Request, httpx.Response, None], httpx.Request]:
    auth = PaymentAuth(world.payer, Intent(task_id="task-1", purpose="read", **intent))  # type: ignore[arg-type]
    request = httpx.Request("GET", URL)
    flow = auth.sync_auth_flow(request)
    assert next(flow) is request  # the first try goes out untouched
    return flow, request


def test_a_402_is_reserved_then_signed_then_posted(world: World) -> None:
    flow, _ = start(world)
    paid = flow.send(challenge(world))
    # The reservation was committed before the signed request was handed out.
    (reserved,) = booked_payments(world.books)
    assert reserved.state == "reserved" and reserved.amount == PRICE_ATOMIC
    assert (reserved.task_id, reserved.purpose, reserved.resource) == ("task-1", "read", URL)
    payload = decode_payment_signature(paid.headers["PAYMENT-SIGNATURE"])
    assert isinstance(payload, PaymentPayload)
    assert payload.authorization.to == world.merchant
    assert payload.authorization.value == PRICE_ATOMIC
    assert payload.authorization.nonce == derive_nonce(reserved.payment_id, world.agent.address)
    assert reserved.nonce == "0x" + payload.authorization.nonce.hex()
    answer = settled(world)
    with pytest.raises(StopIteration):
        flow.send(answer)
    outcome = outcome_of(answer)
    assert outcome is not None and outcome.status == "paid" and outcome.tx_hash == TX
    (posted,) = booked_payments(world.books)
    assert (posted.state, posted.tx_hash) == ("posted", TX)


def test_no_402_means_free_and_nothing_booked(world: World) -> None:
    flow, _ = start(world)
    response = httpx.Response(200, text="free")
    with pytest.raises(StopIteration):
        flow.send(response)
    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "free"
    assert booked_payments(world.books) == []


def test_a_refusal_voids_the_reservation(world: World) -> None:
    flow, _ = start(world)
    flow.send(challenge(world))
    refusal = settled(world, success=False, reason="insufficient_balance")
    with pytest.raises(StopIteration):
        flow.send(refusal)
    outcome = outcome_of(refusal)
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "refused",
        "insufficient_balance",
    )
    assert [p.state for p in booked_payments(world.books)] == ["voided"]


def test_no_answer_leaves_possible_spend(world: World) -> None:
    flow, _ = start(world)
    paid = flow.send(challenge(world))
    flow.close()  # what httpx does when the paid request times out
    outcome = outcome_of(paid)
    assert outcome is not None and outcome.status == "possible_spend"
    assert [p.state for p in booked_payments(world.books)] == ["reserved"]


def test_a_retry_after_no_answer_re_sends_the_same_authorization(world: World) -> None:
    flow, _ = start(world)
    first = flow.send(challenge(world))
    flow.close()  # no answer: possible spend
    again, _ = start(world)
    second = again.send(challenge(world))
    # The same purchase gets the same payment, byte for byte: never a second authorization.
    assert second.headers["PAYMENT-SIGNATURE"] == first.headers["PAYMENT-SIGNATURE"]
    with pytest.raises(StopIteration):
        again.send(settled(world))
    assert [p.state for p in booked_payments(world.books)] == ["posted"]


def test_settlement_pending_is_retried_with_the_same_payment(world: World) -> None:
    flow, _ = start(world)
    first = flow.send(challenge(world))
    again = flow.send(settled(world, success=False, reason="settlement_pending"))
    assert again.headers["PAYMENT-SIGNATURE"] == first.headers["PAYMENT-SIGNATURE"]
    with pytest.raises(StopIteration):
        flow.send(settled(world))
    assert [p.state for p in booked_payments(world.books)] == ["posted"]


def test_a_price_above_max_price_is_declined_without_reserving(world: World) -> None:
    flow, _ = start(world, max_price=PRICE_ATOMIC - 1)
    response = challenge(world)
    with pytest.raises(StopIteration):
        flow.send(response)
    outcome = outcome_of(response)
    assert outcome is not None and (outcome.status, outcome.reason) == (
        "not_paid",
        "price_above_max",
    )
    assert booked_payments(world.books) == []


@pytest.mark.anyio
async def test_the_client_pays_the_paywalled_blog(chain_world: World) -> None:
    world = chain_world
    merchant_before = world.token.balance_of(world.merchant)
    async with world.client() as http:
        preview = await http.get(f"{BLOG}/")
        response = await http.get(URL)
    assert preview.status_code == 200
    assert response.status_code == 200, response.text
    assert "960 of them a pound" in response.text  # the paid part
    outcome = outcome_of(response)
    assert outcome is not None and outcome.status == "paid", outcome
    assert outcome.amount == PRICE_ATOMIC and outcome.task_id == "task-1"
    assert world.token.balance_of(world.merchant) == merchant_before + PRICE_ATOMIC
    (payment,) = booked_payments(world.books)
    assert payment.state == "posted" and payment.tx_hash == outcome.tx_hash
    report = world.reconcile()
    assert report.breaks == ()
    assert report.payments_checked == 2  # the funding mint and the payment
