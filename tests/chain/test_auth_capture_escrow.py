"""Our auth-capture escrow keeps the x402 spec's promises on both real chains (memory and anvil).

Each test deploys a fresh stablecoin, places our AuthCaptureEscrow, ERC-3009
payment collector and operator refund collector at the canonical v1.1
addresses, and drives a payment through its lifecycle with a real payer
signature (an EIP-3009 ReceiveWithAuthorization whose nonce is the payment's
payer-agnostic hash). Every balance is checked exactly, in atomic units, after
every step; every refusal by its snake_case reason, with nothing sent and no
balance moved. The ABI is pinned against the selectors, topics and error
selectors of the commerce-payments v1.1 deployment, and the payment hash
computed in Python against the contract's ``getHash``. Tests that move the
clock (capture deadline, reclaim, refund deadline) run on a chain of their own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from farthing.contracts import load_artifact
from farthing.devchain.node import ensure_deployment, start_anvil
from farthing.paywall.schemes.auth_capture.contract import (
    AUTH_CAPTURE_EVENT_TOPICS,
    AUTH_CAPTURE_SIGNATURES,
    AuthCaptureEscrow,
    PaymentState,
    custom_error_name,
    place_auth_capture_contracts,
)
from farthing.paywall.schemes.auth_capture.payment import (
    PAYMENT_INFO_TYPEHASH,
    PaymentInfo,
    fee_amount,
    payment_authorization,
    salt_binding,
    sign_payment_authorization,
)
from farthing.paywall.schemes.placement import MULTICALL3_ADDRESS
from farthing.wallet.address import ZERO_ADDRESS
from farthing.wallet.chain import Call, Chain, MemoryChain, RpcChain, TxResult
from farthing.wallet.eip3009 import TokenDomain
from farthing.wallet.errors import AuthorizationError, ChainError
from farthing.wallet.networks import (
    AUTH_CAPTURE_CONTRACTS_V1_0,
    CANONICAL_AUTH_CAPTURE_CONTRACTS,
    NETWORKS,
)
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.conftest import anvil_missing_reason

CONTRACTS = CANONICAL_AUTH_CAPTURE_CONTRACTS
PAYER_FUNDS = 10_000_000  # 10 USDC
OPERATOR_FUNDS = 5_000_000  # refund liquidity
PRICE = 1_000_000  # the hold: 1 USDC
FEE_BPS = 100  # 1%, fixed (min == max) to a fixed fee receiver
PRE_APPROVAL_S = 600
CAPTURE_S = 3_600
REFUND_S = 7_200


@dataclass
class Setup:
    """One payment's parties on a fresh token; the dev accounts pay for gas."""

    chain: Chain
    token: Stablecoin
    escrow: AuthCaptureEscrow
    payer: LocalSigner
    operator: LocalSigner  # the facilitator: the delegated operator, sends every call
    outsider: LocalSigner
    receiver: str  # never sends anything
    fee_receiver: str
    start_block: int

    def info(self, now: int | None = None, **overrides: Any) -> PaymentInfo:
        now = self.chain.timestamp() if now is None else now
        fields: dict[str, Any] = {
            "operator": self.operator.address,
            "payer": self.payer.address,
            "receiver": self.receiver,
            "token": self.token.address,
            "max_amount": PRICE,
            "pre_approval_expiry": now + PRE_APPROVAL_S,
            "authorization_expiry": now + CAPTURE_S,
            "refund_expiry": now + REFUND_S,
            "min_fee_bps": FEE_BPS,
            "max_fee_bps": FEE_BPS,
            "fee_receiver": self.fee_receiver,
            "salt": secrets.token_bytes(32),
        }
        fields.update(overrides)
        return PaymentInfo(**fields)

    def signature(self, info: PaymentInfo) -> bytes:
        domain = TokenDomain.for_asset(self.token.asset)
        return sign_payment_authorization(self.payer, info, domain).signature

    def authorize(self, info: PaymentInfo, amount: int | None = None) -> TxResult:
        amount = info.max_amount if amount is None else amount
        return self.escrow.authorize(info, amount, self.signature(info), sender=self.operator)

    def capture(self, info: PaymentInfo, amount: int, **kw: Any) -> TxResult:
        kw.setdefault("fee", fee_amount(amount, FEE_BPS))
        kw.setdefault("fee_receiver", self.fee_receiver)
        kw.setdefault("sender", self.operator)
        return self.escrow.capture(info, amount, **kw)

    def balances(self, info: PaymentInfo) -> dict[str, int]:
        store = self.escrow.token_store(info.operator)
        who = {
            "payer": self.payer.address,
            "operator": self.operator.address,
            "receiver": self.receiver,
            "fee": self.fee_receiver,
            "store": store,
        }
        return {name: self.token.balance_of(address) for name, address in who.items()}


def _setup(chain: Chain) -> Setup:
    owner, payer, operator, outsider = (a.signer() for a in chain.dev_accounts()[:4])
    place_auth_capture_contracts(chain)
    asset = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    assert token.mint(payer.address, PAYER_FUNDS, sender=owner).ok
    assert token.mint(operator.address, OPERATOR_FUNDS, sender=owner).ok
    return Setup(
        chain,
        token,
        AuthCaptureEscrow(chain),
        payer,
        operator,
        outsider,
        LocalSigner.generate().address,
        LocalSigner.generate().address,
        chain.block_number() + 1,
    )


@pytest.fixture
def setup(chain: Chain) -> Setup:
    return _setup(chain)


def _start(s: Setup, info: PaymentInfo) -> dict[str, int]:
    """Authorize the whole hold and check it landed; the balances before it."""
    before = s.balances(info)
    held = s.authorize(info)
    assert held.ok, held.revert_message
    after = s.balances(info)
    assert after["payer"] == before["payer"] - info.max_amount
    assert after["store"] == before["store"] + info.max_amount
    assert s.escrow.payment_state(info) == PaymentState(True, info.max_amount, 0)
    return before


def _refused(s: Setup, info: PaymentInfo, result: TxResult, reason: str) -> None:
    """A refusal found by the simulation: nothing sent, the reason exact."""
    assert (result.ok, result.reason, result.tx_hash) == (False, reason, None)


# ---------------------------------------------------------------- placement, ABI, hashes


def test_contracts_sit_at_the_canonical_addresses(setup: Setup) -> None:
    chain = setup.chain
    assert NETWORKS["base"].auth_capture == CONTRACTS == NETWORKS["base-sepolia"].auth_capture
    assert CONTRACTS.escrow == "0x13AC3b34322D12FE27D5e192D0c2b2266d4F29CB"  # the spec's v1.1
    assert AUTH_CAPTURE_CONTRACTS_V1_0.escrow == "0xBdEA0D1bcC5966192B070Fdf62aB4EF5b4420cff"
    runtime = bytes.fromhex(load_artifact("AuthCaptureEscrow").deployed_bytecode[2:])
    assert chain.code_at(CONTRACTS.escrow) == runtime

    def read(address: str, getter: str) -> bytes:
        result = chain.call(Call(address, keccak(text=f"{getter}()")[:4]))
        assert result.ok, getter
        return result.return_data

    escrow_word = bytes(12) + bytes.fromhex(CONTRACTS.escrow[2:])
    for collector, kind in [
        (CONTRACTS.erc3009_collector, 0),
        (CONTRACTS.operator_refund_collector, 1),
    ]:
        assert read(collector, "authCaptureEscrow") == escrow_word
        assert int.from_bytes(read(collector, "collectorType"), "big") == kind
    multicall = read(CONTRACTS.erc3009_collector, "multicall3")
    assert multicall == bytes(12) + bytes.fromhex(MULTICALL3_ADDRESS[2:])
    assert chain.code_at(MULTICALL3_ADDRESS)
    before = chain.block_number()
    place_auth_capture_contracts(chain)  # idempotent: nothing to write, nothing mined
    assert chain.block_number() == before


def test_placing_on_a_real_network_is_refused() -> None:
    # Refused before any request is made, so no node is needed to show it.
    base = object.__new__(RpcChain)
    base.rpc_url, base.chain_id = "https://mainnet.base.org", 8453
    with pytest.raises(ChainError, match="not a dev chain"):
        place_auth_capture_contracts(base)


def test_the_abi_is_the_commerce_payments_v1_1_abi() -> None:
    abi = load_artifact("AuthCaptureEscrow").abi
    selectors = {keccak(text=sig)[:4].hex(): key for key, sig in AUTH_CAPTURE_SIGNATURES.items()}
    # The v1.1 deployment's selectors, as its published encoders list them.
    assert selectors == {
        "41d66202": "authorize",
        "c449d17c": "charge",
        "3efa46e1": "capture",
        "fa1cad17": "void",
        "e1a2a66d": "reclaim",
        "d458db5a": "refund",
        "063a70ff": "getHash",
        "9d3facde": "getTokenStore",
        "34b778ed": "paymentState",
    }
    ours = {
        f"{i['name']}({','.join(_canonical(p) for p in i['inputs'])})"
        for i in abi
        if i["type"] == "function"
    }
    assert set(AUTH_CAPTURE_SIGNATURES.values()) <= ours
    topics = {name: topic.hex() for name, topic in AUTH_CAPTURE_EVENT_TOPICS.items()}
    assert topics == {
        "PaymentAuthorized": "1c81fb2e3bab27f6bb09bee9a0dddf61600b7cbaf2c12683e4864e0cbdb9d284",
        "PaymentCharged": "137b0e73e4453f43c2e1ad2552980a0e0c7e988764619974ca26d37a7159940c",
        "PaymentCaptured": "ac1e0db1957daedbc6944bcb4c8dc947ff8101d710671ac2ec26309f7f38d58e",
        "PaymentVoided": "cadce8c3acb008e3e1c64ca7f60d22a3c87069183182b7dbb9e4d8cfb3a15842",
        "PaymentReclaimed": "78e1d723d17e13b7f40eeab9bf6dd9148a630bafde4203ab7bb5fca983516d17",
        "PaymentRefunded": "1bf415371b303ca6b8bbb4ce479b177cba5ad15dbe0c9a7750a588aa6bcd25b2",
    }
    events = {
        keccak(text=f"{i['name']}({','.join(_canonical(p) for p in i['inputs'])})").hex()
        for i in abi
        if i["type"] == "event"
    }
    assert set(topics.values()) <= events
    errors = {
        keccak(text=f"{i['name']}({','.join(_canonical(p) for p in i['inputs'])})")[:4].hex(): i[
            "name"
        ]
        for name in ("AuthCaptureEscrow", "ERC3009PaymentCollector")
        for i in load_artifact(name).abi
        if i["type"] == "error"
    }
    published = {
        "e1130dba": "InvalidSender",
        "1f2a2005": "ZeroAmount",
        "6c0442a2": "AmountOverflow",
        "092af19e": "ExceedsMaxAmount",
        "c46cf60f": "AfterPreApprovalExpiry",
        "88ef0760": "InvalidExpiries",
        "bf47e3f7": "FeeBpsOverflow",
        "0950d5d0": "InvalidFeeBpsRange",
        "7c2dcc22": "FeeAmountOutOfRange",
        "b6802b7f": "ZeroFeeReceiver",
        "4caf6a34": "InvalidFeeReceiver",
        "5313287d": "InvalidCollectorForOperation",
        "3c73c4a0": "TokenCollectionFailed",
        "ad7c145a": "PaymentAlreadyCollected",
        "36f2d211": "AfterAuthorizationExpiry",
        "604b0947": "InsufficientAuthorization",
        "93bb7a12": "ZeroAuthorization",
        "aa5674ad": "BeforeAuthorizationExpiry",
        "94271bde": "AfterRefundExpiry",
        "6295d604": "RefundExceedsCapture",
        "bde034f9": "OnlyAuthCaptureEscrow",
    }
    assert {k: errors.get(k) for k in published} == published


def _canonical(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return f"({','.join(_canonical(c) for c in param['components'])}){kind[len('tuple') :]}"
    return kind


def test_python_hashes_equal_the_contracts(setup: Setup) -> None:
    s = setup
    info = s.info()
    escrow = s.escrow
    chain_id = s.chain.chain_id
    assert escrow.get_hash(info) == info.hash(chain_id, CONTRACTS.escrow)
    # The payer's nonce is the hash with the payer zeroed, on the same chain and escrow.
    nonce = info.signature_nonce(chain_id)
    assert nonce == escrow.get_hash(replace(info, payer=ZERO_ADDRESS)) != info.hash(chain_id)
    auth = payment_authorization(info, chain_id=chain_id)
    assert (auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce) == (
        CONTRACTS.erc3009_collector,
        PRICE,
        0,
        info.pre_approval_expiry,
        nonce,
    )
    typehash = s.chain.call(Call(CONTRACTS.escrow, keccak(text="PAYMENT_INFO_TYPEHASH()")[:4]))
    assert abi_decode(["bytes32"], typehash.return_data)[0] == PAYMENT_INFO_TYPEHASH
    # Another chain or another escrow is another payment.
    assert info.hash(chain_id + 1) != info.hash(chain_id)
    assert info.hash(chain_id, AUTH_CAPTURE_CONTRACTS_V1_0.escrow) != info.hash(chain_id)
    assert PaymentInfo.from_wire(info.to_wire()) == info
    assert PaymentInfo.from_abi(info.to_abi()) == info
    bound = salt_binding(s.operator.address, ZERO_ADDRESS, bytes(31) + b"\x01")
    expected = keccak(
        keccak(
            text="x402AuthCaptureSaltBinding(address receiverAuthorizer,address policy,uint256 saltNonce)"
        )
        + bytes(12)
        + bytes.fromhex(s.operator.address[2:])
        + bytes(32)
        + bytes(31)
        + b"\x01"
    )
    assert bound == expected


def test_bad_payment_info_is_refused_before_anything_is_signed(setup: Setup) -> None:
    with pytest.raises(AuthorizationError, match="max_amount"):
        setup.info(max_amount=2**120)
    with pytest.raises(AuthorizationError, match="max_amount"):
        setup.info(max_amount=1.5)
    with pytest.raises(AuthorizationError, match="receiver"):
        setup.info(receiver="0x1234")
    with pytest.raises(AuthorizationError, match="salt"):
        setup.info(salt=b"short")
    with pytest.raises(AuthorizationError, match="maxAmount"):
        PaymentInfo.from_wire({**setup.info().to_wire(), "maxAmount": 1_000_000})
    other_token = TokenDomain("USDC", "2", setup.chain.chain_id, setup.receiver)
    with pytest.raises(AuthorizationError, match="token domain"):
        sign_payment_authorization(setup.payer, setup.info(), other_token)
    with pytest.raises(AuthorizationError, match="signer"):
        sign_payment_authorization(
            setup.outsider, setup.info(), TokenDomain.for_asset(setup.token.asset)
        )


# ---------------------------------------------------------------- the lifecycle


def test_full_capture_pays_the_receiver_and_the_fee_exactly(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = _start(s, info)
    fee = fee_amount(PRICE, FEE_BPS)
    assert fee == 10_000
    captured = s.capture(info, PRICE)
    assert captured.ok, captured.revert_message
    after = s.balances(info)
    assert after["receiver"] == before["receiver"] + PRICE - fee
    assert after["fee"] == before["fee"] + fee
    assert after["payer"] == before["payer"] - PRICE
    assert after["store"] == before["store"]
    assert s.escrow.payment_state(info) == PaymentState(True, 0, PRICE)

    events = s.escrow.events(s.start_block, payment_hash=info.hash(s.chain.chain_id))
    assert [(e.name, e.amount, e.fee_amount) for e in events] == [
        ("PaymentAuthorized", PRICE, None),
        ("PaymentCaptured", PRICE, fee),
    ]
    assert events[0].payment_info == info
    assert events[0].token_collector == CONTRACTS.erc3009_collector
    assert events[1].fee_receiver == s.fee_receiver


def test_partial_capture_then_void_returns_the_rest(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = _start(s, info)
    assert s.capture(info, 300_000).ok
    assert s.capture(info, 200_000).ok  # repeatable up to the hold
    assert s.escrow.payment_state(info) == PaymentState(True, 500_000, 500_000)
    voided = s.escrow.void(info, sender=s.operator)
    assert voided.ok
    after = s.balances(info)
    fees = fee_amount(300_000, FEE_BPS) + fee_amount(200_000, FEE_BPS)
    assert after["payer"] == before["payer"] - 500_000
    assert after["receiver"] == before["receiver"] + 500_000 - fees
    assert after["fee"] == before["fee"] + fees
    assert after["store"] == before["store"]
    assert s.escrow.payment_state(info) == PaymentState(True, 0, 500_000)
    payment_hash = info.hash(s.chain.chain_id)
    names = [e.name for e in s.escrow.events(s.start_block, payment_hash=payment_hash)]
    assert names == ["PaymentAuthorized", "PaymentCaptured", "PaymentCaptured", "PaymentVoided"]
    _refused(s, info, s.escrow.void(info, sender=s.operator), "zero_authorization")


def test_void_before_capture_returns_everything(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = _start(s, info)
    assert s.escrow.void(info, sender=s.operator).ok
    assert s.balances(info) == before
    assert s.escrow.payment_state(info) == PaymentState(True, 0, 0)
    # Nothing is left to capture, and the payment cannot be collected again.
    _refused(s, info, s.capture(info, 1), "insufficient_authorization")
    _refused(s, info, s.authorize(info), "payment_already_collected")


def test_refund_after_capture_comes_from_the_operator(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = _start(s, info)
    assert s.capture(info, 600_000).ok
    # Refund liquidity is the operator's: without an allowance nothing moves.
    _refused(s, info, s.escrow.refund(info, 100_000, sender=s.operator), "insufficient_allowance")
    assert s.token.approve(CONTRACTS.operator_refund_collector, 250_000, sender=s.operator).ok
    refunded = s.escrow.refund(info, 250_000, sender=s.operator)
    assert refunded.ok, refunded.revert_message
    after = s.balances(info)
    assert after["payer"] == before["payer"] - PRICE + 250_000  # 400_000 still on hold
    assert after["operator"] == before["operator"] - 250_000
    assert after["receiver"] == before["receiver"] + 600_000 - fee_amount(600_000, FEE_BPS)
    assert s.escrow.payment_state(info) == PaymentState(True, 400_000, 350_000)
    # Still on hold, so still voidable; the refunded part is gone for good.
    assert s.escrow.void(info, sender=s.operator).ok
    assert s.balances(info)["payer"] == before["payer"] - 600_000 + 250_000
    assert s.token.approve(CONTRACTS.operator_refund_collector, 10**6, sender=s.operator).ok
    _refused(s, info, s.escrow.refund(info, 350_001, sender=s.operator), "refund_exceeds_capture")
    assert s.escrow.refund(info, 350_000, sender=s.operator).ok
    assert s.escrow.payment_state(info) == PaymentState(True, 0, 0)
    final = s.balances(info)
    assert final["payer"] == before["payer"]
    assert final["operator"] == before["operator"] - 600_000
    assert final["store"] == before["store"]
    refunds = [e for e in s.escrow.events(s.start_block) if e.name == "PaymentRefunded"]
    assert [(e.amount, e.token_collector) for e in refunds] == [
        (250_000, CONTRACTS.operator_refund_collector),
        (350_000, CONTRACTS.operator_refund_collector),
    ]


def test_charge_pays_at_once_with_no_hold(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = s.balances(info)
    fee = fee_amount(700_000, FEE_BPS)
    charged = s.escrow.charge(
        info, 700_000, s.signature(info), fee=fee, fee_receiver=s.fee_receiver, sender=s.operator
    )
    assert charged.ok, charged.revert_message
    after = s.balances(info)
    # Only the charged amount leaves the payer: the collector returns the rest at once.
    assert after["payer"] == before["payer"] - 700_000
    assert after["receiver"] == before["receiver"] + 700_000 - fee
    assert after["fee"] == before["fee"] + fee
    assert s.escrow.payment_state(info) == PaymentState(True, 0, 700_000)
    _refused(s, info, s.escrow.void(info, sender=s.operator), "zero_authorization")
    (event,) = s.escrow.events(s.start_block, payment_hash=info.hash(s.chain.chain_id))
    assert (event.name, event.amount, event.fee_amount, event.fee_receiver) == (
        "PaymentCharged",
        700_000,
        fee,
        s.fee_receiver,
    )
    assert event.payment_info == info and event.token_collector == CONTRACTS.erc3009_collector


# ---------------------------------------------------------------- refusals


def test_refusals_leave_every_balance_as_it_was(setup: Setup) -> None:
    s = setup
    info = s.info()
    _start(s, info)
    assert s.capture(info, 400_000).ok
    held = s.balances(info)
    state = s.escrow.payment_state(info)

    # Over what is on hold.
    _refused(s, info, s.capture(info, 600_001), "insufficient_authorization")
    # Fees outside the signed bounds, or to anyone but the fixed fee receiver.
    _refused(s, info, s.capture(info, 100_000, fee=999), "fee_amount_out_of_range")
    _refused(s, info, s.capture(info, 100_000, fee=1_001), "fee_amount_out_of_range")
    _refused(s, info, s.capture(info, 100_000, fee_receiver=s.receiver), "invalid_fee_receiver")
    _refused(s, info, s.capture(info, 0), "zero_amount")
    # Over what was captured.
    _refused(s, info, s.escrow.refund(info, 400_001, sender=s.operator), "refund_exceeds_capture")
    # Nobody but the operator drives the payment; the payer may only reclaim.
    for sender in (s.payer, s.outsider):
        _refused(s, info, s.capture(info, 1, sender=sender), "invalid_sender")
        _refused(s, info, s.escrow.void(info, sender=sender), "invalid_sender")
        _refused(s, info, s.escrow.refund(info, 1, sender=sender), "invalid_sender")
    _refused(s, info, s.escrow.reclaim(info, sender=s.operator), "invalid_sender")
    # Before the capture deadline the hold is not the payer's to take back.
    _refused(s, info, s.escrow.reclaim(info, sender=s.payer), "before_authorization_expiry")
    # The same payment, authorized again with the same signature.
    _refused(s, info, s.authorize(info), "payment_already_collected")

    assert s.balances(info) == held
    assert s.escrow.payment_state(info) == state

    # After a full capture there is nothing left to void.
    assert s.capture(info, 600_000).ok
    _refused(s, info, s.escrow.void(info, sender=s.operator), "zero_authorization")


def test_a_signature_fits_only_its_own_payment(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = s.balances(info)
    signature = s.signature(info)
    # Not from anyone but the operator, even with the payer's signature.
    _refused(
        s,
        info,
        s.escrow.authorize(info, PRICE, signature, sender=s.outsider),
        "invalid_sender",
    )
    # The nonce commits to every term: changed terms, or another operator, fail the token's check.
    for changed in (
        replace(info, receiver=s.outsider.address),
        replace(info, max_amount=PRICE + 1),
        replace(info, salt=secrets.token_bytes(32)),
    ):
        _refused(
            s,
            changed,
            s.escrow.authorize(changed, changed.max_amount, signature, sender=s.operator),
            "invalid_signature",
        )
    hijacked = replace(info, operator=s.outsider.address)
    _refused(
        s,
        hijacked,
        s.escrow.authorize(hijacked, PRICE, signature, sender=s.outsider),
        "invalid_signature",
    )
    # The payer's own one-off: a second payment needs a second signature.
    assert s.escrow.authorize(info, PRICE, signature, sender=s.operator).ok
    again = replace(info, salt=secrets.token_bytes(32))
    _refused(
        s,
        again,
        s.escrow.authorize(again, PRICE, signature, sender=s.operator),
        "invalid_signature",
    )
    assert s.balances(info)["payer"] == before["payer"] - PRICE


def test_bad_terms_are_refused_by_the_escrow(setup: Setup) -> None:
    s = setup
    now = s.chain.timestamp()
    cases = [
        (s.info(authorization_expiry=now + 60, pre_approval_expiry=now + 120), "invalid_expiries"),
        (s.info(refund_expiry=now + CAPTURE_S - 1), "invalid_expiries"),
        (s.info(min_fee_bps=200, max_fee_bps=100), "invalid_fee_bps_range"),
        (s.info(max_fee_bps=10_001), "fee_bps_overflow"),
    ]
    for info, reason in cases:
        before = s.balances(info)
        _refused(s, info, s.authorize(info), reason)
        assert s.balances(info) == before
    info = s.info()
    _refused(s, info, s.authorize(info, PRICE + 1), "exceeds_max_amount")
    # A collector of the wrong kind (the refund one) cannot collect a payment.
    result = s.escrow.authorize(
        info,
        PRICE,
        s.signature(info),
        sender=s.operator,
        collector=CONTRACTS.operator_refund_collector,
    )
    _refused(s, info, result, "invalid_collector_for_operation")


# ---------------------------------------------------------------- deadlines (own clock)


def test_deadlines_capture_reclaim_and_refund(own_chain: Chain) -> None:
    s = _setup(own_chain)
    now = own_chain.timestamp()  # one clock for all three, so each deadline passes for all at once
    reclaimed_info, refunded_info, late_info = (s.info(now) for _ in range(3))
    before = _start(s, reclaimed_info)
    _start(s, refunded_info)
    assert s.capture(refunded_info, 500_000).ok
    assert s.token.approve(CONTRACTS.operator_refund_collector, PRICE, sender=s.operator).ok

    # Past the pre-approval expiry a signed but unused authorization is dead.
    own_chain.advance_time(PRE_APPROVAL_S)
    _refused(s, late_info, s.authorize(late_info), "after_pre_approval_expiry")

    own_chain.advance_time(CAPTURE_S - PRE_APPROVAL_S)
    _refused(s, reclaimed_info, s.capture(reclaimed_info, 1), "after_authorization_expiry")
    # The payer's own way back: only the payer, and only once.
    _refused(
        s, reclaimed_info, s.escrow.reclaim(reclaimed_info, sender=s.operator), "invalid_sender"
    )
    reclaimed = s.escrow.reclaim(reclaimed_info, sender=s.payer)
    assert reclaimed.ok, reclaimed.revert_message
    _refused(
        s, reclaimed_info, s.escrow.reclaim(reclaimed_info, sender=s.payer), "zero_authorization"
    )
    assert s.escrow.payment_state(reclaimed_info) == PaymentState(True, 0, 0)
    # The second payment's rest comes back the same way; its capture stays paid.
    assert s.escrow.reclaim(refunded_info, sender=s.payer).ok
    assert s.balances(reclaimed_info)["payer"] == before["payer"] - 500_000
    events = s.escrow.events(s.start_block, payment_hash=reclaimed_info.hash(own_chain.chain_id))
    assert [(e.name, e.amount) for e in events][-1] == ("PaymentReclaimed", PRICE)

    # Refunds are still open until the refund deadline, and closed after it.
    assert s.escrow.refund(refunded_info, 100_000, sender=s.operator).ok
    own_chain.advance_time(REFUND_S - CAPTURE_S)
    _refused(
        s,
        refunded_info,
        s.escrow.refund(refunded_info, 1, sender=s.operator),
        "after_refund_expiry",
    )
    assert s.escrow.payment_state(refunded_info) == PaymentState(True, 0, 400_000)
    assert s.balances(reclaimed_info)["payer"] == before["payer"] - 400_000


def test_reading_an_escrow_that_is_not_there_raises() -> None:
    escrow = AuthCaptureEscrow(MemoryChain(accounts=1))
    # No code at the canonical address: the read answers nothing, which is no state at all.
    with pytest.raises(ChainError, match="no AuthCaptureEscrow"):
        escrow.payment_state(bytes(32))


def test_only_the_escrow_may_make_a_collector_pull(setup: Setup) -> None:
    s = setup
    info = s.info()
    before = s.balances(info)
    signature = s.signature(info)
    store = s.escrow.token_store(s.operator.address)
    info_type = "(address,address,address,address,uint120,uint48,uint48,uint48,uint16,uint16,address,uint256)"
    selector = keccak(text=f"collectTokens({info_type},address,uint256,bytes)")[:4]
    data = selector + abi_encode(
        [info_type, "address", "uint256", "bytes"], [info.to_abi(), store, PRICE, signature]
    )
    for collector in (CONTRACTS.erc3009_collector, CONTRACTS.operator_refund_collector):
        result = s.chain.send(Call(collector, data), sender=s.outsider)
        assert (result.ok, result.tx_hash) == (False, None)
        assert custom_error_name(result.revert_message) == "OnlyAuthCaptureEscrow"
    assert s.balances(info) == before


@pytest.mark.anvil
def test_chain_dev_places_the_escrow_and_its_collectors(tmp_path: Path) -> None:
    reason = anvil_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with start_anvil() as node:
        chain = node.chain()
        assert not chain.code_at(CONTRACTS.escrow)
        ensure_deployment(chain, tmp_path, fund_atomic=0)
        runtime = bytes.fromhex(load_artifact("AuthCaptureEscrow").deployed_bytecode[2:])
        assert chain.code_at(CONTRACTS.escrow) == runtime
        assert chain.code_at(CONTRACTS.erc3009_collector)
        assert chain.code_at(CONTRACTS.operator_refund_collector)
        chain.close()
