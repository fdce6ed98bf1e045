"""Reconciliation's matching rules report each kind of break once, and nothing on clean books.

The chain side is ``FakeChainView``, an in-memory stand-in for the
``ChainView`` seam (the real chain wiring lives in farthing.wallet). The
ledger side is real: payments are reserved and settled through the
repository, then read back with ``load_payments``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from farthing.ledger import (
    BreakKind,
    ChainView,
    LedgerPayment,
    PaymentDetails,
    TokenTransferEvent,
    find_breaks,
    load_payments,
    register_asset,
    reserve_payment,
    settle_payment,
)

NETWORK = "eip155:31337"
TOKEN = "0x" + "cc" * 20
PAYER = "0x" + "aa" * 20
PAYEE = "0x" + "bb" * 20
NOW_S = 1_750_000_000


def _hash(n: int) -> str:
    return "0x" + format(n, "064x")


@dataclass
class FakeChainView:
    """Transfer logs and used nonces, held in memory."""

    events: list[TokenTransferEvent] = field(default_factory=list)
    used_nonces: set[tuple[str, str]] = field(default_factory=set)

    def token_transfers(
        self, *, token_address: str, addresses: Collection[str], from_block: int, to_block: int
    ) -> Sequence[TokenTransferEvent]:
        return [
            e for e in self.events
            if from_block <= e.block_number <= to_block
            and (e.from_address in addresses or e.to_address in addresses)
        ]  # fmt: skip

    def authorization_state(self, *, authorizer: str, nonce: str) -> bool:
        return (authorizer, nonce) in self.used_nonces


def test_fake_satisfies_the_protocol() -> None:
    chain: ChainView = FakeChainView()
    assert chain.authorization_state(authorizer=PAYER, nonce=_hash(1)) is False


def _pay(books, n: int, amount: int, *, settle: bool = True, block: int | None = 10) -> int:
    payment_id = books.new_id()
    details = PaymentDetails(
        network=NETWORK, token_address=TOKEN, payer_address=PAYER, payee_address=PAYEE,
        authorization_nonce=_hash(1000 + n), valid_before=NOW_S - 5 if not settle else NOW_S + 600,
    )  # fmt: skip
    with books.db.write() as session:
        result = reserve_payment(
            session=session, payment_id=payment_id, budget_account_id=books.BUDGET,
            payee_account_id=books.PAYEE, amount=amount, ledger=books.LEDGER, payment=details,
            now_ns=(NOW_S - 60) * 10**9,
        )  # fmt: skip
        assert result == "ok"
        if settle:
            facts = PaymentDetails(tx_hash=_hash(n), block_number=block)
            assert (
                settle_payment(
                    session=session,
                    payment_id=payment_id,
                    payment=facts,
                    now_ns=(NOW_S - 30) * 10**9,
                )
                == "ok"
            )
    return payment_id


def _event(n: int, value: int, block: int = 10) -> TokenTransferEvent:
    return TokenTransferEvent(_hash(n), 0, PAYER.upper().replace("0X", "0x"), PAYEE, value, block)


def _breaks(books, chain: FakeChainView):
    with books.db.read() as session:
        payments = load_payments(
            session=session, network=NETWORK, token_address=TOKEN.upper().replace("0X", "0x")
        )
    events = chain.token_transfers(
        token_address=TOKEN, addresses={PAYER, PAYEE}, from_block=0, to_block=100
    )
    return find_breaks(
        payments=payments, events=events, chain=chain, from_block=0, to_block=100, now_s=NOW_S
    )


def _setup(books) -> None:
    with books.db.write() as session:
        register_asset(
            session=session,
            asset_id=f"{NETWORK}/erc20:{TOKEN}",
            ledger=1,
            decimals=6,
            symbol="USDC",
        )


def test_clean_books_report_no_breaks(books) -> None:
    _setup(books)
    _pay(books, 1, 500)
    _pay(books, 2, 700)
    chain = FakeChainView(events=[_event(1, 500), _event(2, 700)])
    assert _breaks(books, chain) == []


def test_each_kind_of_break_is_reported(books) -> None:
    _setup(books)
    missing_on_chain = _pay(books, 1, 500)
    mismatched = _pay(books, 2, 700)
    _pay(books, 3, 100)
    stuck_used = _pay(books, 4, 40, settle=False)
    stuck_unused = _pay(books, 5, 60, settle=False)
    chain = FakeChainView(
        events=[_event(2, 699), _event(3, 100), _event(9, 123)],
        used_nonces={(PAYER, _hash(1004))},
    )
    found = {(b.kind, b.transfer_id, b.resolution) for b in _breaks(books, chain)}
    assert found == {
        # Posted payments are reported by their payment id, as the payer saved it.
        (BreakKind.MISSING_ON_CHAIN, missing_on_chain, None),
        (BreakKind.AMOUNT_MISMATCH, mismatched, None),
        (BreakKind.MISSING_IN_LEDGER, None, None),
        (BreakKind.PENDING_PAST_TIMEOUT, stuck_used, "post"),
        (BreakKind.PENDING_PAST_TIMEOUT, stuck_unused, "void"),
    }


def test_out_of_range_and_unknown_block_payments() -> None:
    chain = FakeChainView(used_nonces={(PAYER, _hash(7))})
    elsewhere = LedgerPayment(1, True, 5, PAYER, PAYEE, _hash(1), block_number=500)
    unknown_block_used = LedgerPayment(
        2, True, 5, PAYER, PAYEE, _hash(2), authorization_nonce=_hash(7)
    )
    unknown_block_unused = LedgerPayment(
        3, True, 5, PAYER, PAYEE, _hash(3), authorization_nonce=_hash(8)
    )
    no_hash = LedgerPayment(4, True, 5, PAYER, PAYEE)
    breaks = find_breaks(
        payments=[elsewhere, unknown_block_used, unknown_block_unused, no_hash],
        events=[], chain=chain, from_block=0, to_block=100, now_s=NOW_S,
    )  # fmt: skip
    assert [(b.kind, b.transfer_id) for b in breaks] == [
        (BreakKind.MISSING_ON_CHAIN, 3),
        (BreakKind.MISSING_ON_CHAIN, 4),
    ]


def test_pending_without_nonce_is_not_guessed() -> None:
    stuck = LedgerPayment(1, False, 5, PAYER, PAYEE, valid_before=NOW_S - 1)
    (only,) = find_breaks(
        payments=[stuck], events=[], chain=FakeChainView(), from_block=0, to_block=1, now_s=NOW_S
    )
    assert only.kind is BreakKind.PENDING_PAST_TIMEOUT and only.resolution is None
