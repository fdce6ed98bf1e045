"""The server's channel state charges each voucher once and refuses bad ones with the spec's codes.

Runs on a real SQLite file and on the PostgreSQL test server (skipped only when
it is unreachable). Vouchers are real EIP-712 signatures from fresh keys. The
refusals the issue lists are each checked to leave the state unchanged; a
stale cumulative amount comes back with the corrective state and the payer's
own last voucher. Concurrency: 20 threads, then 2 processes
(``channel_charge_worker.py``) each holding all 20 vouchers, race on one
channel, and every voucher is charged exactly once. Recovery runs on the
memory chain with our escrow at the canonical address: the state is dropped
and rebuilt from ``ChannelCreated`` events and the ``channels`` view.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow, ChannelSnapshot
from farthing.paywall.schemes.batch_settlement.state import (
    ChannelStore,
    ChannelTerms,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelConfig,
    ChannelDomain,
    SignedVoucher,
    sign_voucher,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_ID_MISMATCH,
    ERR_CHANNEL_NOT_FOUND,
    ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
    ERR_CUMULATIVE_EXCEEDS_BALANCE,
    ERR_INVALID_VOUCHER_SIGNATURE,
    ERR_RECEIVER_AUTHORIZER_MISMATCH,
)
from farthing.wallet.chain import MemoryChain
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.signer import LocalSigner
from tests import zygote

POSTGRES_URL = os.environ.get(
    "FARTHING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CHAIN_ID = 31337
NETWORK = f"eip155:{CHAIN_ID}"
DOMAIN = ChannelDomain(CHAIN_ID)
TOKEN = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
PRICE = 1_000
BALANCE = 100_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'paywall.sqlite'}"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture
def store(url: str) -> Iterator[ChannelStore]:
    opened = ChannelStore(url, domain=DOMAIN, network=NETWORK)
    yield opened
    opened.dispose()


class Channel:
    """A fresh channel (its own keys, so rows never collide in a shared database)."""

    def __init__(self) -> None:
        self.voucher_key = LocalSigner.generate()
        self.terms = ChannelTerms(
            receiver=LocalSigner.generate().address,
            receiver_authorizer=LocalSigner.generate().address,
            token=TOKEN,
            withdraw_delay_s=900,
        )
        self.config = ChannelConfig(
            payer=LocalSigner.generate().address,
            payer_authorizer=self.voucher_key.address,
            receiver=self.terms.receiver,
            receiver_authorizer=self.terms.receiver_authorizer,
            token=TOKEN,
            withdraw_delay_s=900,
            salt=secrets.token_bytes(32),
        )
        self.id = DOMAIN.channel_id(self.config)

    def voucher(self, ceiling: int, key: LocalSigner | None = None) -> SignedVoucher:
        return sign_voucher(key or self.voucher_key, DOMAIN, self.id, ceiling)

    def open(self, store: ChannelStore, balance: int = BALANCE) -> None:
        store.mirror(self.config, ChannelSnapshot(self.id, balance, 0, 0, 0, 0))


def _charge(
    store: ChannelStore, ch: Channel, voucher: SignedVoucher, actual: int = PRICE
) -> ChargeAccepted | ChargeRefused:
    return store.charge(ch.terms, ch.config, voucher, price=PRICE, actual=actual)


def test_vouchers_are_charged_and_the_record_is_the_specs_state(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store)
    for n in (1, 2, 3):
        outcome = _charge(store, ch, ch.voucher(n * PRICE))
        assert isinstance(outcome, ChargeAccepted)
        assert outcome.charged_amount == PRICE
    record = store.get(ch.id)
    assert record is not None
    assert (record.charged, record.signed_max, record.balance) == (3 * PRICE, 3 * PRICE, BALANCE)
    assert record.unclaimed == 3 * PRICE
    state = record.channel_state().to_wire()
    assert state["chargedCumulativeAmount"] == str(3 * PRICE)
    assert state["balance"] == str(BALANCE)


def test_dynamic_price_records_the_actual_charge_and_moves_the_next_ceiling(
    store: ChannelStore,
) -> None:
    ch = Channel()
    ch.open(store)
    outcome = _charge(store, ch, ch.voucher(PRICE), actual=370)
    assert isinstance(outcome, ChargeAccepted)
    assert (outcome.record.charged, outcome.record.signed_max) == (370, PRICE)
    # The next voucher is charged-so-far + ceiling, not the old ceiling + ceiling.
    refused = _charge(store, ch, ch.voucher(2 * PRICE))
    assert isinstance(refused, ChargeRefused) and refused.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
    assert isinstance(_charge(store, ch, ch.voucher(370 + PRICE), actual=0), ChargeAccepted)
    over = _charge(store, ch, ch.voucher(370 + 2 * PRICE), actual=PRICE + 1)
    assert isinstance(over, ChargeRefused)
    assert over.reason == ERR_CHARGE_EXCEEDS_SIGNED_CUMULATIVE
    after = store.get(ch.id)
    assert after is not None and after.charged == 370


def test_each_refusal_has_the_specs_reason_and_changes_nothing(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store, balance=5 * PRICE)
    assert isinstance(_charge(store, ch, ch.voucher(PRICE)), ChargeAccepted)
    assert isinstance(_charge(store, ch, ch.voucher(2 * PRICE)), ChargeAccepted)
    before = store.get(ch.id)
    assert before is not None

    # A stale cumulative amount (a client that lost one response): corrective state.
    stale = _charge(store, ch, ch.voucher(2 * PRICE))
    assert isinstance(stale, ChargeRefused) and stale.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
    assert stale.record is not None
    assert stale.record.channel_state().charged_cumulative_amount == 2 * PRICE
    proof = stale.record.voucher_state()
    assert proof is not None and proof.signed_max_claimable == 2 * PRICE
    # The client checks the proof is its own before resyncing, as the spec says.
    digest = DOMAIN.voucher_digest(ch.id, proof.signed_max_claimable)
    assert recover_digest(digest, proof.signature) == ch.voucher_key.address

    # An old voucher replayed.
    old = _charge(store, ch, ch.voucher(PRICE))
    assert isinstance(old, ChargeRefused) and old.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH

    # A voucher over the balance (the client skipped its top-up).
    store.mirror(ch.config, ChannelSnapshot(ch.id, 2 * PRICE + 500, 0, 0, 0, 0))
    over = _charge(store, ch, ch.voucher(3 * PRICE))
    assert isinstance(over, ChargeRefused) and over.reason == ERR_CUMULATIVE_EXCEEDS_BALANCE
    store.mirror(ch.config, ChannelSnapshot(ch.id, 5 * PRICE, 0, 0, 0, 0))

    # A channel id that does not match its config.
    other_salt = replace(ch.config, salt=secrets.token_bytes(32))
    mismatch = store.charge(ch.terms, other_salt, ch.voucher(3 * PRICE), price=PRICE, actual=PRICE)
    assert isinstance(mismatch, ChargeRefused) and mismatch.reason == ERR_CHANNEL_ID_MISMATCH

    # A wrong receiverAuthorizer: a self-consistent channel, but not for this offer.
    foreign = replace(ch.config, receiver_authorizer=LocalSigner.generate().address)
    voucher = sign_voucher(ch.voucher_key, DOMAIN, DOMAIN.channel_id(foreign), 3 * PRICE)
    wrong = store.charge(ch.terms, foreign, voucher, price=PRICE, actual=PRICE)
    assert isinstance(wrong, ChargeRefused) and wrong.reason == ERR_RECEIVER_AUTHORIZER_MISMATCH

    # A voucher signed by another key.
    forged = _charge(store, ch, ch.voucher(3 * PRICE, key=LocalSigner.generate()))
    assert isinstance(forged, ChargeRefused) and forged.reason == ERR_INVALID_VOUCHER_SIGNATURE
    tampered = replace(ch.voucher(3 * PRICE), max_claimable_amount=4 * PRICE)
    assert _charge(store, ch, tampered).reason == ERR_INVALID_VOUCHER_SIGNATURE  # type: ignore[union-attr]

    # A channel nobody deposited into.
    unknown = Channel()
    missing = _charge(store, unknown, unknown.voucher(PRICE))
    assert isinstance(missing, ChargeRefused) and missing.reason == ERR_CHANNEL_NOT_FOUND

    after = store.get(ch.id)
    assert after is not None
    assert (after.charged, after.signed_max, after.signature) == (
        before.charged,
        before.signed_max,
        before.signature,
    )
    # And the client resyncs from the corrective state: the right voucher passes.
    assert isinstance(_charge(store, ch, ch.voucher(3 * PRICE)), ChargeAccepted)


def test_a_refund_voucher_must_be_zero_charge(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store)
    assert isinstance(_charge(store, ch, ch.voucher(PRICE), actual=600), ChargeAccepted)
    record = store.check_refund(ch.terms, ch.config, ch.voucher(600))
    assert not isinstance(record, ChargeRefused) and record.charged == 600
    stale = store.check_refund(ch.terms, ch.config, ch.voucher(PRICE))
    assert isinstance(stale, ChargeRefused) and stale.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
    forged = store.check_refund(ch.terms, ch.config, ch.voucher(600, key=LocalSigner.generate()))
    assert isinstance(forged, ChargeRefused) and forged.reason == ERR_INVALID_VOUCHER_SIGNATURE


def test_twenty_threads_on_one_channel_charge_each_voucher_once(store: ChannelStore) -> None:
    ch = Channel()
    ch.open(store)
    same = ch.voucher(PRICE)
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda _: _charge(store, ch, same), range(20)))
    assert sum(isinstance(o, ChargeAccepted) for o in outcomes) == 1
    assert {o.reason for o in outcomes if isinstance(o, ChargeRefused)} == {
        ERR_CUMULATIVE_AMOUNT_MISMATCH
    }

    # Twenty different vouchers at once, each retried until its turn comes.
    vouchers = [ch.voucher(n * PRICE) for n in range(2, 22)]
    accepted: list[int] = []
    lock = threading.Lock()

    def pay(voucher: SignedVoucher) -> None:
        for _ in range(2000):
            if isinstance(_charge(store, ch, voucher), ChargeAccepted):
                with lock:
                    accepted.append(voucher.max_claimable_amount)
                return

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(pay, vouchers))
    assert sorted(accepted) == [v.max_claimable_amount for v in vouchers]
    record = store.get(ch.id)
    assert record is not None and record.charged == 21 * PRICE


def test_two_processes_racing_with_the_same_vouchers_charge_each_once(
    url: str, store: ChannelStore, tmp_path: Path
) -> None:
    ch = Channel()
    ch.open(store)
    job = {
        "url": url,
        "chain_id": CHAIN_ID,
        "network": NETWORK,
        "config": ch.config.to_wire(),
        "terms": {
            "receiver": ch.terms.receiver,
            "receiver_authorizer": ch.terms.receiver_authorizer,
            "token": ch.terms.token,
            "withdraw_delay_s": ch.terms.withdraw_delay_s,
        },
        "price": PRICE,
        "vouchers": [ch.voucher(n * PRICE).to_wire() for n in range(1, 21)],
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    worker = Path(__file__).with_name("channel_charge_worker.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        zygote.spawn(
            [sys.executable, str(worker), str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    results = [
        json.loads(p.communicate(timeout=180)[0].strip().splitlines()[-1]) for p in processes
    ]
    assert all(p.returncode == 0 for p in processes)
    first, second = (set(r["accepted"]) for r in results)
    assert not first & second  # no voucher charged twice
    assert first | second == {n * PRICE for n in range(1, 21)}  # none lost
    record = store.get(ch.id)
    assert record is not None and record.charged == 20 * PRICE


def test_lost_state_is_recovered_from_the_chain(tmp_path: Path) -> None:
    from tests.chain.test_batch_settlement import _setup

    chain = MemoryChain()
    try:
        s = _setup(chain)
        assert s.deposit(50_000).ok
        escrow = ChannelEscrow(chain)
        domain = ChannelDomain(chain.chain_id)
        terms = ChannelTerms(
            s.config.receiver,
            s.config.receiver_authorizer,
            s.config.token,
            s.config.withdraw_delay_s,
        )
        first = ChannelStore(
            f"sqlite:///{tmp_path / 'a.sqlite'}",
            domain=domain,
            network=chain.network,
            escrow=escrow,
        )
        # An unknown channel is read from the chain on its first voucher.
        for n in (1, 2, 3):
            voucher = sign_voucher(s.voucher_key, domain, s.channel_id, n * PRICE)
            outcome = first.charge(terms, s.config, voucher, price=PRICE, actual=PRICE)
            assert isinstance(outcome, ChargeAccepted), outcome
        record = first.get(s.channel_id)
        assert record is not None and record.balance == 50_000
        # The server claims the second voucher, then loses its database.
        claimed = s.claim_row(2 * PRICE, 2 * PRICE)
        assert escrow.claim([claimed], sender=s.authorizer).ok
        first.dispose()

        second = ChannelStore(
            f"sqlite:///{tmp_path / 'b.sqlite'}",
            domain=domain,
            network=chain.network,
            escrow=escrow,
        )
        recovered = second.recover(s.config.receiver)
        assert [r.channel_id for r in recovered] == [s.channel_id]
        (again,) = recovered
        assert again.config == s.config
        assert (again.balance, again.total_claimed, again.charged) == (50_000, 2 * PRICE, 2 * PRICE)
        assert again.signature is None  # the unclaimed third voucher is forfeited
        assert second.recover(LocalSigner.generate().address) == []  # other receivers' channels

        # The client still at 3 * PRICE gets the corrective state, then resyncs.
        stale = sign_voucher(s.voucher_key, domain, s.channel_id, 4 * PRICE)
        refused = second.charge(terms, s.config, stale, price=PRICE, actual=PRICE)
        assert isinstance(refused, ChargeRefused)
        assert refused.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
        assert refused.record is not None and refused.record.charged == 2 * PRICE
        resynced = sign_voucher(s.voucher_key, domain, s.channel_id, 3 * PRICE)
        assert isinstance(
            second.charge(terms, s.config, resynced, price=PRICE, actual=PRICE), ChargeAccepted
        )

        # A timed withdrawal shows up in the mirror, so a claim strategy can see it.
        assert escrow.initiate_withdraw(s.config, 1_000, sender=s.payer).ok
        seen = second.mirror(s.config, escrow.snapshot(s.channel_id))
        assert seen.withdraw_requested_at > 0
        assert seen.charged == 3 * PRICE
        second.dispose()
    finally:
        chain.close()
