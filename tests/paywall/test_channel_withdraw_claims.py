"""One channel's claim can never block another's, and a charge above the escrow is a reported break.

Real anvil, our contracts, our middleware (ASGI) with revenue books in a
migrated SQLite ledger, and the claimer ``farthing paywall claim`` runs
(``tick(force=True)``). Three channels are due at once: A is sound; B's
payer withdrew everything while B's vouchers were unclaimed (the claimer was
off), so B's row charged more than its escrow now holds; C's stored voucher
signature is damaged, so its claim reverts. Before the fix all three went
into one ``claimWithSignature`` that reverted every time, and A was never
claimed. Now each row is simulated alone first: C is dropped and reported
with the contract's error, B's claim is capped at what its escrow holds
(nothing) and reported as a shortfall, and A is claimed and settled.
Reconciliation reports B as ``charged_above_balance``. And a withdrawal that
a request's chain read shows first wakes the background claimer at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.reconcile import (
    ChannelBreak,
    reconcile_channel_books,
)
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import CHANNELS, ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
    sign_voucher,
)
from farthing.wallet.chain import Call
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client, inner_app, serve_in_thread
from tests.paywall.test_channel_books import channel_app
from tests.paywall.test_channel_paywall import DELAY_S, _Channel, channel_store_fixture

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]  # the fixture, shared with test_channel_paywall


@pytest.fixture(name="books")
def books_fixture(tmp_path: Path) -> Iterator[LedgerRevenueBook]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield LedgerRevenueBook(database)
    database.dispose()


def test_a_bad_channel_is_dropped_and_reported_and_the_rest_are_claimed(
    chain_env: ChainEnv,
    store: PaymentStore,
    channel_store: ChannelStore,
    books: LedgerRevenueBook,
) -> None:
    env, authorizer = chain_env, LocalSigner.generate()
    app = channel_app(env, store, channel_store, authorizer, books)
    assert app.channels is not None
    claimer, p = app.channels.claimer, PRICE_ATOMIC
    a, b, c = (_Channel(env, authorizer) for _ in range(3))
    cid_a, cid_b, cid_c = ("0x" + ch.id.hex() for ch in (a, b, c))
    escrow = ChannelEscrow(env.chain)
    merchant_before = env.token.balance_of(env.merchant)

    async def pay(ch: _Channel, requests_n: int) -> None:
        async with asgi_client(app) as http:
            for n in range(1, requests_n + 1):
                payload = ch.deposit(100 * p, p) if n == 1 else ch.voucher(n * p)
                r = await http.get("/api/data", headers=ch.header(payload))
                assert r.status_code == 200, r.text

    # B is paid twice, then its payer takes the whole deposit back before any claim.
    asyncio.run(pay(b, 2))
    assert env.chain.send(Call(b.payer.address, b"", value=10**18), sender=env.owner).ok
    assert escrow.initiate_withdraw(b.config, 100 * p, sender=b.payer).ok
    env.chain.advance_time(DELAY_S + 1)
    assert escrow.finalize_withdraw(b.config, sender=b.payer).ok
    assert escrow.channel(b.id) == (0, 0)

    asyncio.run(pay(a, 3))
    asyncio.run(pay(c, 1))
    # C's row now holds a voucher its payer never signed: its claim reverts.
    forged = sign_voucher(LocalSigner.generate(), channel_store.domain, c.id, p)
    with channel_store.engine.begin() as connection:
        connection.execute(
            update(CHANNELS)
            .where(CHANNELS.c.channel_id == cid_c)
            .values(signature="0x" + forged.signature.hex())
        )

    report = asyncio.run(claimer.tick(force=True))
    assert report.claimed == {cid_a: 3 * p}
    assert len(report.failures) == 1, report.failures
    assert cid_c in report.failures[0] and "InvalidSignature" in report.failures[0]
    assert report.shortfalls == {cid_b: 2 * p}
    assert report.to_json()["shortfalls"] == {cid_b: str(2 * p)}
    assert escrow.channel(a.id) == (100 * p, 3 * p)
    assert escrow.channel(c.id) == (100 * p, 0)
    assert env.token.balance_of(env.merchant) - merchant_before == 3 * p

    breaks = set(reconcile_channel_books(channel_store, books).breaks)
    assert ChannelBreak(cid_b, "charged_above_balance", 0, 2 * p) in breaks
    assert ChannelBreak(cid_b, "unclaimed_past_withdrawal", 0, 2 * p) in breaks
    assert not [x for x in breaks if x.subject == cid_a]


def test_a_withdrawal_seen_by_a_request_wakes_the_claimer_at_once(
    chain_env: ChainEnv, store: PaymentStore, tmp_path: Path
) -> None:
    """The claimer sleeps its longest interval (600 s), yet claims within seconds.

    Its store re-reads the chain on every charge (``state_ttl_s=0``), so the
    payer's next voucher after ``initiateWithdraw`` is what shows the
    withdrawal; the store flags it and the claimer running on the app's
    lifespan wakes, claims and settles.
    """
    env, authorizer, p = chain_env, LocalSigner.generate(), PRICE_ATOMIC
    place_channel_contracts(env.chain)
    channels = ChannelStore(
        f"sqlite:///{tmp_path / 'channels.sqlite'}",
        domain=ChannelDomain(env.chain.chain_id),
        network=env.chain.network,
        escrow=ChannelEscrow(env.chain),
        state_ttl_s=0,
    )
    app = PaywallMiddleware(
        inner_app(),
        options=PaywallOptions(
            routes=[PaidRoute("/api/**", p, schemes=("batch-settlement",))],
            facilitator=env.facilitator(),
            store=store,
            pay_to=env.merchant,
            asset=env.asset,
            channels=ChannelOptions(
                channels, authorizer, withdraw_delay_s=DELAY_S, claim_interval_s=600
            ),
        ),
    )
    ch, escrow = _Channel(env, authorizer), ChannelEscrow(env.chain)
    assert env.chain.send(Call(ch.payer.address, b"", value=10**18), sender=env.owner).ok
    try:
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30.0) as http:
            for payload in (ch.deposit(10 * p, p), ch.voucher(2 * p)):
                paid = http.get("/api/data", headers=ch.header(payload))
                assert paid.status_code == 200, paid.text
            time.sleep(1.0)  # the claimer's first tick is over: it now sleeps 600 s
            assert escrow.channel(ch.id) == (10 * p, 0)
            assert escrow.initiate_withdraw(ch.config, 5 * p, sender=ch.payer).ok
            # Within what stays after the withdrawal (10 - 5): taken, and it shows it.
            third = http.get("/api/data", headers=ch.header(ch.voucher(3 * p)))
            assert third.status_code == 200, third.text
            deadline = time.monotonic() + 20
            while escrow.channel(ch.id)[1] < 3 * p:
                assert time.monotonic() < deadline, "the claimer did not wake"
                time.sleep(0.1)
            # Above what stays: refused, whatever the payer does next.
            beyond = http.get("/api/data", headers=ch.header(ch.voucher(6 * p)))
            assert beyond.status_code == 402
    finally:
        channels.dispose()
    assert escrow.channel(ch.id) == (10 * p, 3 * p)
