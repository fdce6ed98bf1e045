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
Reconciliation reports B as ``charged_above_balance``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import PaymentStore
from farthing.paywall.books import LedgerRevenueBook
from farthing.paywall.channel_reconcile import ChannelBreak, reconcile_channel_books
from farthing.paywall.channel_state import CHANNELS, ChannelStore
from farthing.wallet.chain import Call
from farthing.wallet.channels import sign_voucher
from farthing.wallet.escrow import ChannelEscrow
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
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
