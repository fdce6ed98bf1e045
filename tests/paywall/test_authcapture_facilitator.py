"""The auth-capture facilitator moves exactly the money its payloads consent to, once, on real chains.

Each test places our escrow contracts on the memory chain (and on anvil,
marked), deploys a fresh stablecoin, and drives a payment through
:class:`AuthCaptureFacilitator` with a real payer signature (the client's
collect payload) and real server consents (the receiver authorizer's EIP-712
``Capture``/``Void``/``Refund``). Every balance is checked exactly, in atomic
units, after every step; every refusal by the spec's error code with no
balance moved. Tests that move the clock run on a chain of their own. One
lifecycle also runs through ``farthing facilitator serve``'s HTTP app (ASGI
transport).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from farthing.paywall.facilitator.api import facilitator_app
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.schemes.auth_capture.consent import (
    capture_payload,
    collect_payload,
    refund_payload,
    void_payload,
)
from farthing.paywall.schemes.auth_capture.contract import (
    PaymentState,
    place_auth_capture_contracts,
)
from farthing.paywall.schemes.auth_capture.facilitator import AuthCaptureFacilitator
from farthing.paywall.schemes.auth_capture.payment import PaymentInfo, fee_amount
from farthing.paywall.schemes.auth_capture.types import (
    ERR_AUTHORIZATION_EXPIRED,
    ERR_AUTHORIZER_SIGNATURE,
    ERR_CAPTURE_DEADLINE_EXPIRED,
    ERR_IDEMPOTENCY_CONFLICT,
    ERR_INSUFFICIENT_AUTHORIZATION,
    ERR_LIFECYCLE_NOT_RELAYED,
    ERR_OPERATOR_NOT_ADMITTED,
    ERR_PAYLOAD_METHOD_MISMATCH,
    ERR_PAYMENT_ALREADY_COLLECTED,
    ERR_REFUND_EXCEEDS_CAPTURE,
    ERR_REFUND_FUNDING_UNAVAILABLE,
    ERR_SIGNATURE,
    ERR_UNEXPECTED_PAYMENT_STATE,
    ERR_UNSUPPORTED_ASSET_TRANSFER_METHOD,
    ERR_UNSUPPORTED_OPERATOR_TYPE,
    ERR_UNSUPPORTED_PAYMENT_FLOW,
    ERR_ZERO_AUTHORIZATION,
)
from farthing.paywall.schemes.auth_capture.wire import (
    AuthCaptureExtra,
    AuthCapturePayment,
    AuthCaptureRequirements,
    CollectPayload,
    parse_payment,
    parse_requirements,
)
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.wire import SettleResult
from farthing.wallet.chain import Call, Chain, MemoryChain, TxResult
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin

PAYER_FUNDS = 10_000_000  # 10 USDC
OPERATOR_FUNDS = 5_000_000  # the operator's refund liquidity (the funding agreement)
PRICE = 1_000_000  # the hold
FEE_BPS = 100  # 1%, fixed, to a fixed fee recipient
TIMEOUT_S = 300
CAPTURE_S = 3_600
REFUND_S = 7_200


@dataclass
class Setup:
    chain: Chain
    token: Stablecoin
    payer: LocalSigner
    operator: LocalSigner  # the facilitator's key: captureAuthorizer
    authorizer: LocalSigner  # the server's receiver authorizer: signs every consent
    receiver: str
    fee_recipient: str
    facilitator: AuthCaptureFacilitator

    def requirements(self, now: int | None = None, **extra: Any) -> AuthCaptureRequirements:
        now = self.chain.timestamp() if now is None else now
        fields: dict[str, Any] = {
            "name": "USDC",
            "version": "2",
            "capture_authorizer": self.operator.address,
            "capture_deadline": now + CAPTURE_S,
            "refund_deadline": now + REFUND_S,
            "fee_recipient": self.fee_recipient,
            "min_fee_bps": FEE_BPS,
            "max_fee_bps": FEE_BPS,
            "receiver_authorizer": self.authorizer.address,
        }
        fields.update(extra)
        return AuthCaptureRequirements(
            network=self.chain.network,
            asset=self.token.address,
            amount=PRICE,
            pay_to=self.receiver,
            max_timeout_seconds=TIMEOUT_S,
            extra=AuthCaptureExtra(**fields),
        )

    def pay(
        self, req: AuthCaptureRequirements, *, now: int | None = None
    ) -> tuple[AuthCapturePayment, PaymentInfo, bytes]:
        """The client's payment for ``req``: the envelope, its PaymentInfo and saltNonce."""
        now = self.chain.timestamp() if now is None else now
        payload, info = collect_payload(self.payer, req, now=now)
        nonce = payload.salt if payload.salt_nonce is None else payload.salt_nonce
        return AuthCapturePayment(req, payload), info, nonce

    def hold(self, req: AuthCaptureRequirements) -> tuple[PaymentInfo, bytes]:
        payment, info, nonce = self.pay(req)
        assert self.facilitator.verify(payment, req).valid
        held = self.facilitator.authorize(payment, req)
        assert held.success, held
        assert self.facilitator.state(info) == PaymentState(True, PRICE, 0)
        return info, nonce

    def balances(self) -> dict[str, int]:
        store = self.facilitator.escrow.token_store(self.operator.address)
        who = {
            "payer": self.payer.address,
            "receiver": self.receiver,
            "fee": self.fee_recipient,
            "operator": self.operator.address,
            "store": store,
        }
        return {name: self.token.balance_of(address) for name, address in who.items()}


def _setup(chain: Chain, *, refunds: bool = True) -> Setup:
    owner, payer, operator = (a.signer() for a in chain.dev_accounts()[:3])
    place_auth_capture_contracts(chain)
    asset = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    assert token.mint(operator.address, OPERATOR_FUNDS, sender=owner).ok
    receiver = LocalSigner.generate().address
    facilitator = AuthCaptureFacilitator(
        chain, operator, refund_receivers=[receiver] if refunds else []
    )
    return Setup(
        chain, token, payer, operator, LocalSigner.generate(), receiver,
        LocalSigner.generate().address, facilitator,
    )  # fmt: skip


@pytest.fixture
def s(chain: Chain) -> Setup:
    return _setup(chain)


def _refused(result: SettleResult, reason: str) -> None:
    assert (result.success, result.reason, result.transaction) == (False, reason, ""), result


def _moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def _state(result: SettleResult) -> tuple[int, int]:
    assert result.extra is not None
    return int(result.extra["capturableAmount"]), int(result.extra["refundableAmount"])


# ---------------------------------------------------------------- lifecycles


def test_authorize_then_capture_in_full(s: Setup) -> None:
    req = s.requirements()
    before = s.balances()
    info, nonce = s.hold(req)
    assert _moved(before, s.balances()) == {"payer": -PRICE, "store": PRICE}
    fee = fee_amount(PRICE, FEE_BPS)
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
    )
    assert op.fee_amount == fee == 10_000
    captured = s.facilitator.capture(op, req)
    assert captured.success and captured.amount == PRICE and captured.transaction
    assert _state(captured) == (0, PRICE)
    assert _moved(before, s.balances()) == {
        "payer": -PRICE, "receiver": PRICE - fee, "fee": fee,
    }  # fmt: skip


def test_capture_part_then_void_the_rest(s: Setup) -> None:
    req = s.requirements()
    before = s.balances()
    info, nonce = s.hold(req)
    part = 600_000
    op = capture_payload(
        s.authorizer, req, info, nonce, part, expected=PaymentState(True, PRICE, 0)
    )
    assert _state(s.facilitator.capture(op, req)) == (PRICE - part, part)
    voided = s.facilitator.void(void_payload(s.authorizer, req, info, nonce), req)
    assert voided.success and voided.amount == PRICE - part
    assert _state(voided) == (0, part)
    fee = fee_amount(part, FEE_BPS)
    assert _moved(before, s.balances()) == {"payer": -part, "receiver": part - fee, "fee": fee}


def test_capture_and_void_in_one_settle(s: Setup) -> None:
    req = s.requirements()
    before = s.balances()
    info, nonce = s.hold(req)
    part = 250_000
    op = capture_payload(
        s.authorizer, req, info, nonce, part, expected=PaymentState(True, PRICE, 0), void_rest=True
    )
    settled = s.facilitator.capture(op, req)
    assert settled.success and settled.extra is not None and settled.extra["voidTransaction"]
    assert _state(settled) == (0, part)
    fee = fee_amount(part, FEE_BPS)
    assert _moved(before, s.balances()) == {"payer": -part, "receiver": part - fee, "fee": fee}
    # The combined consent cannot void a full capture: nothing would remain.
    info2, nonce2 = s.hold(req)
    full = capture_payload(
        s.authorizer, req, info2, nonce2, PRICE, expected=PaymentState(True, PRICE, 0),
        void_rest=True,
    )  # fmt: skip
    _refused(
        s.facilitator.capture(full, req), "invalid_auth_capture_evm_void_remainder_full_capture"
    )


def test_capture_then_refund(s: Setup) -> None:
    req = s.requirements()
    before = s.balances()
    info, nonce = s.hold(req)
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
    )
    assert s.facilitator.capture(op, req).success
    back = 300_000
    refund = refund_payload(
        s.authorizer, req, info, nonce, back, expected=PaymentState(True, 0, PRICE)
    )
    refunded = s.facilitator.refund(refund, req)
    assert refunded.success and refunded.amount == back
    assert _state(refunded) == (0, PRICE - back)
    fee = fee_amount(PRICE, FEE_BPS)
    # The refund's money comes from the operator, under the funding agreement.
    assert _moved(before, s.balances()) == {
        "payer": -PRICE + back, "receiver": PRICE - fee, "fee": fee, "operator": -back,
    }  # fmt: skip
    # Refund over what remains captured: refused, nothing moves.
    middle = s.balances()
    over = refund_payload(
        s.authorizer,
        req,
        info,
        nonce,
        PRICE - back + 1,
        expected=PaymentState(True, 0, PRICE - back),
    )
    _refused(s.facilitator.refund(over, req), ERR_REFUND_EXCEEDS_CAPTURE)
    assert s.balances() == middle


def test_void_before_capture(s: Setup) -> None:
    req = s.requirements()
    before = s.balances()
    info, nonce = s.hold(req)
    voided = s.facilitator.void(void_payload(s.authorizer, req, info, nonce), req)
    assert voided.success and voided.amount == PRICE and _state(voided) == (0, 0)
    assert s.balances() == before
    # Nothing is left to capture; a second void finds no hold.
    op = capture_payload(s.authorizer, req, info, nonce, 1, expected=PaymentState(True, 0, 0))
    _refused(s.facilitator.capture(op, req), ERR_INSUFFICIENT_AUTHORIZATION)
    again = void_payload(s.authorizer, req, info, nonce, idempotency_key="second-void")
    _refused(s.facilitator.void(again, req), ERR_ZERO_AUTHORIZATION)
    assert s.balances() == before


# ---------------------------------------------------------------- refusals, nothing moved


def test_capture_over_the_hold_is_refused(s: Setup) -> None:
    req = s.requirements()
    info, nonce = s.hold(req)
    before = s.balances()
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE + 1, expected=PaymentState(True, PRICE, 0)
    )
    _refused(s.facilitator.capture(op, req), ERR_INSUFFICIENT_AUTHORIZATION)
    assert s.balances() == before and s.facilitator.state(info) == PaymentState(True, PRICE, 0)


def test_a_replayed_capture_consent_moves_money_once(s: Setup) -> None:
    req = s.requirements()
    info, nonce = s.hold(req)
    part = 400_000
    op = capture_payload(
        s.authorizer, req, info, nonce, part, expected=PaymentState(True, PRICE, 0)
    )
    first = s.facilitator.capture(op, req)
    assert first.success
    after_first = s.balances()
    # The same consent again (a transport retry): the first outcome, nothing sent.
    assert s.facilitator.capture(op, req) == first
    # Under a caller key of its own it meets the moved balances: refused.
    _refused(
        s.facilitator.capture(op, req, idempotency_key="job-7-capture-2"),
        ERR_UNEXPECTED_PAYMENT_STATE,
    )
    # Explicit keys: a replay answers the first outcome ...
    second = capture_payload(
        s.authorizer, req, info, nonce, part, expected=PaymentState(True, PRICE - part, part),
        idempotency_key="job-7-capture-3",
    )  # fmt: skip
    settled = s.facilitator.capture(second, req)
    assert settled.success and s.facilitator.capture(second, req) == settled
    # ... and another operation may not reuse the key.
    void = void_payload(s.authorizer, req, info, nonce, idempotency_key="job-7-capture-3")
    _refused(s.facilitator.void(void, req), ERR_IDEMPOTENCY_CONFLICT)
    assert s.facilitator.state(info) == PaymentState(True, PRICE - 2 * part, 2 * part)
    fee = fee_amount(part, FEE_BPS)
    assert _moved(after_first, s.balances()) == {"receiver": part - fee, "fee": fee, "store": -part}


def test_a_replayed_authorize_answers_the_first_hold(s: Setup) -> None:
    req = s.requirements()
    payment, _, _ = s.pay(req)
    first = s.facilitator.authorize(payment, req)
    assert first.success
    before = s.balances()
    assert s.facilitator.authorize(payment, req) == first
    assert s.balances() == before
    # verify of a collected authorization: used.
    verified = s.facilitator.verify(payment, req)
    assert (verified.valid, verified.reason) == (False, ERR_PAYMENT_ALREADY_COLLECTED)


def test_void_after_a_full_capture_is_refused(s: Setup) -> None:
    req = s.requirements()
    info, nonce = s.hold(req)
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
    )
    assert s.facilitator.capture(op, req).success
    before = s.balances()
    _refused(
        s.facilitator.void(void_payload(s.authorizer, req, info, nonce), req),
        ERR_ZERO_AUTHORIZATION,
    )
    assert s.balances() == before


def test_consents_must_be_the_receiver_authorizers(s: Setup) -> None:
    req = s.requirements()
    info, nonce = s.hold(req)
    before = s.balances()
    stranger = LocalSigner.generate()
    op = capture_payload(stranger, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0))
    _refused(s.facilitator.capture(op, req), ERR_AUTHORIZER_SIGNATURE)
    _refused(
        s.facilitator.void(void_payload(stranger, req, info, nonce), req), ERR_AUTHORIZER_SIGNATURE
    )
    # A consent to one amount does not cover another.
    signed = capture_payload(
        s.authorizer, req, info, nonce, 1_000, expected=PaymentState(True, PRICE, 0)
    )
    _refused(s.facilitator.capture(replace(signed, amount=PRICE), req), ERR_AUTHORIZER_SIGNATURE)
    assert s.balances() == before


def test_without_a_receiver_authorizer_only_authorize_is_relayed(s: Setup) -> None:
    req = s.requirements(receiver_authorizer="0x" + "00" * 20)
    payment, info, _ = s.pay(req)
    assert isinstance(payment.payload, CollectPayload) and payment.payload.salt_nonce is None
    assert s.facilitator.authorize(payment, req).success
    op = capture_payload(
        s.authorizer, req, info, bytes(32), PRICE, expected=PaymentState(True, PRICE, 0)
    )
    _refused(s.facilitator.capture(op, req), ERR_LIFECYCLE_NOT_RELAYED)


def test_refunds_need_a_funding_agreement() -> None:
    chain = MemoryChain(accounts=4)
    try:
        s = _setup(chain, refunds=False)
        req = s.requirements()
        info, nonce = s.hold(req)
        op = capture_payload(
            s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
        )
        assert s.facilitator.capture(op, req).success
        before = s.balances()
        refund = refund_payload(
            s.authorizer, req, info, nonce, 1, expected=PaymentState(True, 0, PRICE)
        )
        _refused(s.facilitator.refund(refund, req), ERR_REFUND_FUNDING_UNAVAILABLE)
        assert s.balances() == before
    finally:
        chain.close()


def test_bad_client_payloads_are_refused(s: Setup) -> None:
    req = s.requirements()
    before = s.balances()
    # Signed by someone other than the payer it names.
    payment, _, _ = s.pay(req)
    assert isinstance(payment.payload, CollectPayload)
    forged = replace(payment.payload, signature=bytes(reversed(payment.payload.signature)))
    bad = replace(payment, payload=forged)
    assert s.facilitator.verify(bad, req).reason == ERR_SIGNATURE
    _refused(s.facilitator.authorize(bad, req), ERR_SIGNATURE)
    other = LocalSigner.generate()
    stolen, _ = collect_payload(other, req, now=s.chain.timestamp())
    swapped = replace(
        stolen, authorization=replace(stolen.authorization, from_address=s.payer.address)
    )
    _refused(s.facilitator.authorize(replace(payment, payload=swapped), req), ERR_SIGNATURE)
    # An authorization whose window has (all but) closed.
    expired, _, _ = s.pay(req, now=s.chain.timestamp() - TIMEOUT_S + 3)
    assert s.facilitator.verify(expired, req).reason == ERR_AUTHORIZATION_EXPIRED
    _refused(s.facilitator.authorize(expired, req), ERR_AUTHORIZATION_EXPIRED)
    # Another facilitator's operator.
    foreign = s.requirements(capture_authorizer=LocalSigner.generate().address)
    payment2, _, _ = s.pay(foreign)
    _refused(s.facilitator.authorize(payment2, foreign), ERR_OPERATOR_NOT_ADMITTED)
    assert s.balances() == before


def test_wire_refusals_carry_the_spec_codes(s: Setup) -> None:
    req = s.requirements()
    payment, _, _ = s.pay(req)
    wire = payment.to_wire()
    parsed = parse_payment(wire)
    assert parsed == payment
    assert parse_requirements(req.to_wire()) == req

    def refusal(data: Any) -> str:
        out = parse_payment(data)
        assert isinstance(out, WireRefusal), out
        return out.reason

    def with_extra(**changes: Any) -> dict[str, Any]:
        accepted = dict(wire["accepted"], extra=dict(wire["accepted"]["extra"], **changes))
        return dict(wire, accepted=accepted)

    assert refusal(with_extra(operatorType="custom")) == ERR_UNSUPPORTED_OPERATOR_TYPE
    assert refusal(with_extra(operatorType="policy")) == ERR_UNSUPPORTED_OPERATOR_TYPE
    assert (
        refusal(with_extra(assetTransferMethod="permit2")) == ERR_UNSUPPORTED_ASSET_TRANSFER_METHOD
    )
    assert refusal(with_extra(paymentFlow="authorization")) == ERR_UNSUPPORTED_PAYMENT_FLOW
    assert refusal(with_extra(autoCapture=True)) == ERR_UNSUPPORTED_PAYMENT_FLOW
    assert refusal(with_extra(authCaptureEscrow="0xBdEA0D1bcC5966192B070Fdf62aB4EF5b4420cff")) == (
        "invalid_auth_capture_evm_extra"
    )
    assert refusal(with_extra(policy=s.receiver)) == "invalid_auth_capture_evm_policy"
    assert refusal(with_extra(minFeeBps=True)) == "invalid_auth_capture_evm_extra"
    permit2 = dict(wire, payload={
        "permit2Authorization": {"from": s.payer.address}, "signature": "0x00", "salt": "0x" + "00" * 32,
    })  # fmt: skip
    assert refusal(permit2) == ERR_PAYLOAD_METHOD_MISMATCH
    assert (
        refusal(dict(wire, payload={"type": "reclaim"})) == "invalid_auth_capture_evm_payload_type"
    )
    for junk in (None, [], "x", {"x402Version": 2}, dict(wire, payload={"salt": 1})):
        assert refusal(junk).startswith("invalid_auth_capture_evm_")
    amount = dict(wire, payload=dict(wire["payload"], authorization=dict(
        wire["payload"]["authorization"], value=1.5,
    )))  # fmt: skip
    assert refusal(amount) == "invalid_auth_capture_evm_payload_format"


class FakeLostReceipt:
    """The submitter seam: sends for real, but reports the first receipt as never arriving."""

    def __init__(self, chain: Chain, signer: LocalSigner) -> None:
        self.chain, self.signer, self.lost = chain, signer, 0

    def __call__(self, call: Call) -> TxResult:
        sent = self.chain.send(call, sender=self.signer)
        if self.lost == 0 and sent.ok:
            self.lost += 1
            return TxResult(False, sent.tx_hash, "receipt_timeout", None)
        return sent


def test_a_settlement_without_a_receipt_is_resolved_not_resent(s: Setup) -> None:
    lossy = FakeLostReceipt(s.chain, s.operator)
    facilitator = AuthCaptureFacilitator(s.chain, s.operator, send=lossy)
    req = s.requirements()
    info, nonce = s.hold(req)
    before = s.balances()
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
    )
    pending = facilitator.capture(op, req)
    assert (pending.success, pending.reason) == (
        False,
        "invalid_auth_capture_evm_settlement_pending",
    )
    assert pending.transaction
    # The retry reads the receipt instead of sending again.
    resolved = facilitator.capture(op, req)
    assert resolved.success and resolved.transaction == pending.transaction
    assert facilitator.capture(op, req) == resolved
    fee = fee_amount(PRICE, FEE_BPS)
    assert _moved(before, s.balances()) == {"receiver": PRICE - fee, "fee": fee, "store": -PRICE}


# ---------------------------------------------------------------- the clock


def test_capture_after_the_deadline_is_refused(own_chain: Chain) -> None:
    s = _setup(own_chain)
    req = s.requirements()
    info, nonce = s.hold(req)
    before = s.balances()
    own_chain.advance_time(CAPTURE_S + 1)
    op = capture_payload(
        s.authorizer, req, info, nonce, PRICE, expected=PaymentState(True, PRICE, 0)
    )
    _refused(s.facilitator.capture(op, req), ERR_CAPTURE_DEADLINE_EXPIRED)
    assert s.balances() == before
    # The payer takes its hold back itself: reclaim is never relayed.
    assert s.facilitator.escrow.reclaim(info, sender=s.payer).ok
    assert _moved(before, s.balances()) == {"payer": PRICE, "store": -PRICE}


# ---------------------------------------------------------------- over HTTP


def test_a_lifecycle_through_the_facilitator_app(chain: Chain) -> None:
    asyncio.run(_lifecycle_over_http(_setup(chain)))


async def _lifecycle_over_http(s: Setup) -> None:
    chain = s.chain
    local = LocalFacilitator(
        chain,
        s.operator,
        auth_capture_operator=s.operator,
        auth_capture_refund_receivers=[s.receiver],
    )
    app = facilitator_app(local)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://facilitator") as client:
        kinds = (await client.get("/supported")).json()["kinds"]
        ours = [k for k in kinds if k["scheme"] == "auth-capture"]
        assert ours == [{
            "x402Version": 2, "scheme": "auth-capture", "network": chain.network,
            "extra": {"captureAuthorizer": s.operator.address},
        }]  # fmt: skip

        async def post(
            path: str, payment: dict[str, Any], req: AuthCaptureRequirements
        ) -> dict[str, Any]:
            body = {
                "x402Version": 2,
                "paymentPayload": payment,
                "paymentRequirements": req.to_wire(),
            }
            response = await client.post(path, json=body)
            assert response.status_code == 200, response.text
            data: dict[str, Any] = response.json()
            return data

        req = s.requirements()
        before = s.balances()
        payment, info, nonce = s.pay(req)
        verified = await post("/verify", payment.to_wire(), req)
        assert verified["isValid"] is True and verified["payer"] == s.payer.address
        held = await post("/settle", payment.to_wire(), req)
        assert held["success"] is True and held["extra"]["capturableAmount"] == str(PRICE)

        def lifecycle(payload: Any) -> dict[str, Any]:
            return {"x402Version": 2, "accepted": req.to_wire(), "payload": payload.to_wire()}

        part = 700_000
        op = capture_payload(
            s.authorizer, req, info, nonce, part, expected=PaymentState(True, PRICE, 0)
        )
        captured = await post("/settle", lifecycle(op), req)
        assert captured["success"] is True and captured["amount"] == str(part)
        replayed = await post("/settle", lifecycle(op), req)
        assert replayed == captured
        refund = refund_payload(
            s.authorizer, req, info, nonce, 100_000, expected=PaymentState(True, PRICE - part, part)
        )
        refunded = await post("/settle", lifecycle(refund), req)
        assert refunded["success"] is True
        voided = await post("/settle", lifecycle(void_payload(s.authorizer, req, info, nonce)), req)
        assert voided["success"] is True and voided["amount"] == str(PRICE - part)
        assert (voided["extra"]["capturableAmount"], voided["extra"]["refundableAmount"]) == (
            "0", str(part - 100_000),
        )  # fmt: skip
        fee = fee_amount(part, FEE_BPS)
        assert _moved(before, s.balances()) == {
            "payer": -part + 100_000, "receiver": part - fee, "fee": fee, "operator": -100_000,
        }  # fmt: skip
        # Refusals answer 200 with the spec's code.
        custom = dict(req.to_wire(), extra=dict(req.to_wire()["extra"], operatorType="custom"))
        body = {
            "x402Version": 2,
            "paymentPayload": payment.to_wire(),
            "paymentRequirements": custom,
        }
        refused = (await client.post("/settle", json=body)).json()
        assert refused["success"] is False
        assert refused["errorReason"] == ERR_UNSUPPORTED_OPERATOR_TYPE
