"""The merchant's channel reconciliation matches the escrow's events with the books, and finds the breaks.

Real anvil, our contracts, our middleware (ASGI) booking into a migrated
SQLite ledger. A channel that was paid, claimed and settled reconciles with
no breaks; more vouchers then show as a receivable, still no break. A claim
and a settle sent behind the books' back (our own signing, no sync) are
``claims_differ`` and ``settles_differ`` until the books sync the events. A
second payer withdraws (initiate, anvil time travel past the delay,
finalize) while its vouchers are unclaimed: ``unclaimed_past_withdrawal``, and
its row charged above what its escrow holds: ``charged_above_balance``.
``farthing paywall reconcile-channels --json``, as a real process, reports
the same and exits 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database
from farthing.paywall import PaymentStore
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow, VoucherClaim
from farthing.paywall.schemes.batch_settlement.reconcile import (
    ChannelBreak,
    reconcile_channel_books,
)
from farthing.paywall.schemes.batch_settlement.state import ChannelStore
from farthing.paywall.schemes.batch_settlement.vouchers import ClaimEntry, sign_claim_batch
from farthing.wallet.chain import Call
from farthing.wallet.signer import LocalSigner
from tests.conftest import cli_env, run_farthing
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


def test_channel_reconciliation_matches_events_and_finds_breaks(
    chain_env: ChainEnv,
    store: PaymentStore,
    channel_store: ChannelStore,
    books: LedgerRevenueBook,
    tmp_path: Path,
) -> None:
    env, authorizer = chain_env, LocalSigner.generate()
    app = channel_app(env, store, channel_store, authorizer, books)
    assert app.channels is not None and app.channels.bookkeeper is not None
    claimer, keeper = app.channels.claimer, app.channels.bookkeeper
    p = PRICE_ATOMIC
    a, b = _Channel(env, authorizer), _Channel(env, authorizer)
    cid_a, cid_b = "0x" + a.id.hex(), "0x" + b.id.hex()
    escrow = ChannelEscrow(env.chain)

    async def pay(ch: _Channel, first: int, last: int) -> None:
        async with asgi_client(app) as http:
            for n in range(first, last + 1):
                payload = ch.deposit(100 * p, p) if n == 1 else ch.voucher(n * p)
                r = await http.get("/api/data", headers=ch.header(payload))
                assert r.status_code == 200, r.text

    asyncio.run(pay(a, 1, 4))
    report = asyncio.run(claimer.tick(force=True))
    assert report.failures == () and report.claimed == {cid_a: 4 * p}
    clean = reconcile_channel_books(channel_store, books)
    assert clean.breaks == () and clean.receivables == {cid_a: 0}

    asyncio.run(pay(a, 5, 6))  # earned, not yet claimed: a receivable, not a break
    earning = reconcile_channel_books(channel_store, books)
    assert earning.breaks == () and earning.receivables == {cid_a: 2 * p}

    # A claim and a settle that land without the books hearing of them.
    (record,) = channel_store.records()
    row = VoucherClaim(a.config, record.signed_max, record.signature or b"", record.charged)
    entry = ClaimEntry(a.id, record.signed_max, record.charged)
    signature = sign_claim_batch(authorizer, channel_store.domain, [entry])
    assert escrow.claim_with_signature([row], signature, sender=env.owner).ok
    assert escrow.settle(env.merchant, env.asset.address, sender=env.owner).ok
    behind = reconcile_channel_books(channel_store, books)
    pair = f"{env.merchant}/{env.asset.address}"
    assert set(behind.breaks) == {
        ChannelBreak(cid_a, "claims_differ", 6 * p, 4 * p),
        ChannelBreak(pair, "settles_differ", 6 * p, 4 * p),
    }
    synced = keeper.sync(from_block=0)
    assert synced.failures == ()
    assert reconcile_channel_books(channel_store, books).breaks == ()

    # A payer withdraws while its vouchers are unclaimed: that money is lost to us.
    asyncio.run(pay(b, 1, 2))
    assert env.chain.send(Call(b.payer.address, b"", value=10**18), sender=env.owner).ok
    assert escrow.initiate_withdraw(b.config, 100 * p, sender=b.payer).ok
    env.chain.advance_time(DELAY_S + 1)
    assert escrow.finalize_withdraw(b.config, sender=b.payer).ok
    lost = reconcile_channel_books(channel_store, books)
    assert lost.breaks == (
        ChannelBreak(cid_b, "unclaimed_past_withdrawal", 0, 2 * p),
        ChannelBreak(cid_b, "charged_above_balance", 0, 2 * p),
    )
    assert lost.receivables == {cid_a: 0, cid_b: 2 * p}

    result = run_farthing(
        [
            "paywall", "reconcile-channels", "--json", "--rpc-url", env.chain.rpc_url or "",
            "--database-url", channel_store.display_url,
            "--ledger-database-url", f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        ],
        env=cli_env(tmp_path / "data"),
    )  # fmt: skip
    assert result.code == 1, result.stderr
    assert result.json() == {
        "breaks": [
            {
                "subject": cid_b,
                "kind": "unclaimed_past_withdrawal",
                "chain": "0",
                "books": str(2 * p),
            },
            {
                "subject": cid_b,
                "kind": "charged_above_balance",
                "chain": "0",
                "books": str(2 * p),
            },
        ],
        "receivables": {cid_a: "0", cid_b: str(2 * p)},
    }
