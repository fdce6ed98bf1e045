"""Channel revenue is booked per voucher as earned and per claim and settle as landed, and equals the chain.

Real anvil with our contracts, a migrated SQLite ledger behind
``LedgerRevenueBook``, our middleware driven through ``httpx.ASGITransport``.
A payer deposits once and pays many requests (some metered below the
ceiling); the receivables then hold exactly what the channel rows say was
earned. The claimer claims and settles; the books follow the escrow's
``Claimed`` and ``Settled`` events, a second sync books nothing twice, and
every account equals the chain: receivable 0, claimed-in-escrow 0, cash =
the merchant's token balance = revenue. Then two more requests and a
cooperative refund: the refund's claim is booked as it lands, and the next
(unforced) claimer tick settles that claimed money, so the books equal the
chain again. A charge is booked once per reservation: a retry is
``exists``, and two reservations that share a cumulative amount are two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from farthing.ledger import LedgerDatabase, LedgerSettings, lookup_accounts, upgrade_database
from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.records.books import (
    ChannelAsset,
    ChannelCharge,
    LedgerRevenueBook,
    account_id,
)
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
from tests.paywall.test_channel_paywall import (
    DELAY_S,
    _Channel,
    _data,
    _metered,
    channel_store_fixture,
)

pytestmark = pytest.mark.anvil
__all__ = ["channel_store_fixture"]  # the fixture, shared with test_channel_paywall


@pytest.fixture(name="ledger")
def ledger_fixture(tmp_path: Path) -> Iterator[LedgerDatabase]:
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    )
    upgrade_database(database)
    yield database
    database.dispose()


def channel_app(
    env: ChainEnv,
    store: PaymentStore,
    channels: ChannelStore,
    authorizer: LocalSigner,
    books: LedgerRevenueBook,
) -> PaywallMiddleware:
    inner = Starlette(routes=[Route("/api/data", _data), Route("/api/metered", _metered)])
    return PaywallMiddleware(
        inner,
        options=PaywallOptions(
            routes=[PaidRoute("/api/**", PRICE_ATOMIC, schemes=("batch-settlement",))],
            facilitator=env.facilitator(),
            store=store,
            books=books,
            pay_to=env.merchant,
            asset=env.asset,
            channels=ChannelOptions(
                channels, authorizer, withdraw_delay_s=DELAY_S, claim_in_background=False
            ),
        ),
    )


def balances(books: LedgerRevenueBook, env: ChainEnv, channel_id: str) -> dict[str, int]:
    """Each channel account's balance, in the direction it grows."""
    asset = ChannelAsset(env.chain.network, env.asset.address, 6, "USDC")
    ledger = books.ledger_of(asset)
    key = f"{env.merchant}/{env.asset.address}"
    ids = {
        "receivable": account_id("receivable", ledger, channel_id),
        "claimed": account_id("claimed", ledger, key),
        "cash": account_id("cash", ledger, key),
        "revenue": account_id("revenue", ledger, env.merchant),
    }
    with books.database.read() as session:
        found = {a.id: a for a in lookup_accounts(session=session, ids=list(ids.values()))}
    out = {}
    for name, i in ids.items():
        a = found.get(i)
        debit = 0 if a is None else a.debits_posted - a.credits_posted
        out[name] = -debit if name == "revenue" else debit
    return out


def test_books_follow_vouchers_claims_and_settles_exactly(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore, ledger: LedgerDatabase
) -> None:
    env, authorizer, books = chain_env, LocalSigner.generate(), LedgerRevenueBook(ledger)
    ch = _Channel(env, authorizer)
    app = channel_app(env, store, channel_store, authorizer, books)
    p = PRICE_ATOMIC
    cid = "0x" + ch.id.hex()
    merchant_before = env.token.balance_of(env.merchant)

    async def go() -> None:
        async with asgi_client(app) as http:
            paid = await http.get("/api/data", headers=ch.header(ch.deposit(100 * p, p)))
            assert paid.status_code == 200, paid.text
            charged = p
            for n in range(15):
                used = p if n % 3 else 1_000 + n  # every third request meters below the ceiling
                path = "/api/data" if used == p else f"/api/metered?used={used}"
                r = await http.get(path, headers=ch.header(ch.voucher(charged + p)))
                assert r.status_code == 200, r.text
                charged += used
            assert balances(books, env, cid)["receivable"] == charged
            assert balances(books, env, cid)["revenue"] == charged
            (record,) = channel_store.records()
            assert record.charged == charged

            assert app.channels is not None
            report = await app.channels.claimer.tick(force=True)
            assert report.failures == () and len(report.transactions) == 2
            assert report.booked is not None
            assert (report.booked.claims, report.booked.settles) == (1, 1)

    asyncio.run(go())
    (record,) = channel_store.records()
    assert ChannelEscrow(env.chain).channel(ch.id) == (100 * p, record.charged)
    received = env.token.balance_of(env.merchant) - merchant_before
    assert received == record.charged
    after = balances(books, env, cid)
    assert after == {"receivable": 0, "claimed": 0, "cash": received, "revenue": received}

    # Booking the same events again changes nothing.
    assert app.channels is not None and app.channels.bookkeeper is not None
    again = app.channels.bookkeeper.sync(from_block=0)
    assert (again.claims, again.settles, again.failures) == (1, 1, ())
    assert balances(books, env, cid) == after

    # Two more requests, then a cooperative refund: it claims what was earned
    # (booked from its Claimed event) and the claimer sweeps it next tick.
    earned = record.charged

    async def refund() -> None:
        async with asgi_client(app) as http:
            for n in (1, 2):
                r = await http.get("/api/data", headers=ch.header(ch.voucher(earned + n * p)))
                assert r.status_code == 200, r.text
            back = ch.voucher(earned + 2 * p)
            back["type"] = "refund"
            done = await http.get("/api/data", headers=ch.header(back))
            assert done.status_code == 200, done.text
        claimed_now = balances(books, env, cid)
        assert claimed_now["receivable"] == 0 and claimed_now["claimed"] == 2 * p
        assert app.channels is not None
        swept = await app.channels.claimer.tick()
        assert swept.failures == () and swept.claimed == {} and swept.settled == 2 * p

    asyncio.run(refund())
    total = earned + 2 * p
    assert ChannelEscrow(env.chain).channel(ch.id) == (total, total)
    assert env.token.balance_of(env.merchant) - merchant_before == total
    assert balances(books, env, cid) == {
        "receivable": 0,
        "claimed": 0,
        "cash": total,
        "revenue": total,
    }


def test_a_charge_is_booked_once_per_reservation(ledger: LedgerDatabase) -> None:
    # Two reservations may share a cumulative amount when a concurrent request
    # released its ceiling in between; the reservation stamp keeps them apart,
    # while a retry of one booking (same stamp) is "exists", never a second one.
    books = LedgerRevenueBook(ledger)
    asset = ChannelAsset("eip155:31337", "0x" + "aa" * 20, 6, "USDC")
    cid = "0x" + "cd" * 32

    def charge(stamp: int) -> ChannelCharge:
        return ChannelCharge(asset, "0x" + "bb" * 20, "0x" + "cc" * 20, cid, 20, stamp, 10, "")

    assert books.record_channel_charge(charge(1)).reason == "ok"
    assert books.record_channel_charge(charge(1)).reason == "exists"
    assert books.record_channel_charge(charge(2)).reason == "ok"
    ledger_id = books.ledger_of(asset)
    with books.database.read() as session:
        (receivable,) = lookup_accounts(
            session=session, ids=[account_id("receivable", ledger_id, cid)]
        )
    assert receivable.debits_posted == 20
