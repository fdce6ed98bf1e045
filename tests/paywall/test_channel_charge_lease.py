"""A voucher's charge is a lease: held while its answer is produced, final once sent, lapsed if nobody finishes it.

The store half runs on a real SQLite file with real EIP-712 vouchers: a held
charge is not in ``charged`` (so never claimed or booked), a copy of its
voucher is ``channel_busy``, a lapsed hold is dropped by the next charge (the
same voucher is then charged once; a later one gets the state before the
dead request), nothing a lapsed request does afterwards lands, and a table
made before the hold columns gets them on open. The middleware half runs on
anvil with our escrow, our token and the real ``PaywallMiddleware`` over ASGI:
an answer the server could not send is not charged and its retry is served
once; a copy of a voucher whose answer is still being produced gets
``channel_busy`` (not the corrective 402 that would make the payer resync onto
a charge it may never owe); and a handler that outlives its lease, whose hold
a retry took over meanwhile, sends nothing, so the payer pays once.
(The real SIGKILL of a real ``farthing paywall serve`` between charge and
answer is in ``tests/faults/test_channel_crash.py``.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
from farthing.paywall.schemes.batch_settlement.state import (
    ChannelStore,
    ChargeAccepted,
    ChargeRefused,
)
from farthing.paywall.schemes.batch_settlement.vouchers import (
    ChannelDomain,
    place_channel_contracts,
)
from farthing.paywall.schemes.batch_settlement.wire import (
    ERR_CHANNEL_BUSY,
    ERR_CUMULATIVE_AMOUNT_MISMATCH,
)
from farthing.paywall.wire import unb64_json
from farthing.wallet.signer import LocalSigner
from tests.paywall.conftest import PRICE_ATOMIC, ChainEnv, asgi_client
from tests.paywall.test_channel_paywall import DELAY_S, _Channel
from tests.paywall.test_channel_state import DOMAIN, NETWORK, PRICE, Channel

# ---------------------------------------------------------------- the store


@pytest.fixture(name="sqlite_store")
def sqlite_store_fixture(tmp_path: Path) -> Iterator[ChannelStore]:
    opened = ChannelStore(
        f"sqlite:///{tmp_path / 'paywall.sqlite'}", domain=DOMAIN, network=NETWORK
    )
    yield opened
    opened.dispose()


def _hold(
    store: ChannelStore, ch: Channel, ceiling: int, hold_s: float = 60.0
) -> ChargeAccepted | ChargeRefused:
    voucher = ch.voucher(ceiling)
    return store.charge(ch.terms, ch.config, voucher, price=PRICE, actual=PRICE, hold_s=hold_s)


def test_a_held_charge_is_not_charged_until_made_final(sqlite_store: ChannelStore) -> None:
    ch = Channel()
    ch.open(sqlite_store)
    first = _hold(sqlite_store, ch, PRICE)
    assert isinstance(first, ChargeAccepted) and first.hold is not None
    record = sqlite_store.get(ch.id)
    assert record is not None
    # Held, not charged: nothing to claim or book, but the next voucher builds on it.
    assert (record.charged, record.held, record.unclaimed) == (0, PRICE, 0)
    assert record.channel_state().charged_cumulative_amount == PRICE
    # A copy of the held voucher is busy, not stale: the payer must not resync onto it.
    copy = _hold(sqlite_store, ch, PRICE)
    assert isinstance(copy, ChargeRefused) and copy.reason == ERR_CHANNEL_BUSY
    # The next voucher stacks on the live hold (a pipelining client).
    second = _hold(sqlite_store, ch, 2 * PRICE)
    assert isinstance(second, ChargeAccepted) and second.hold is not None
    # The first answer was sent: final. The second failed: freed.
    assert sqlite_store.update_hold(first.hold, charge=PRICE) is not None
    freed = sqlite_store.update_hold(second.hold)
    assert freed is not None and (freed.charged, freed.held) == (PRICE, 0)
    # The next voucher is charged + price again (what the failed one would have been).
    assert isinstance(_hold(sqlite_store, ch, 2 * PRICE), ChargeAccepted)


def test_a_lapsed_hold_is_dropped_and_the_same_voucher_is_charged_once(
    sqlite_store: ChannelStore,
) -> None:
    ch = Channel()
    ch.open(sqlite_store)
    dead = _hold(sqlite_store, ch, PRICE, hold_s=0.05)
    assert isinstance(dead, ChargeAccepted) and dead.hold is not None
    time.sleep(0.1)  # the process that held it died: nobody makes it final
    retry = _hold(sqlite_store, ch, PRICE)
    assert isinstance(retry, ChargeAccepted) and retry.hold is not None
    assert retry.hold.epoch == dead.hold.epoch + 1
    # Nothing the dead request does afterwards lands (a slow one, not dead after all).
    assert sqlite_store.update_hold(dead.hold, charge=PRICE) is None
    assert sqlite_store.update_hold(dead.hold) is None
    final = sqlite_store.update_hold(retry.hold, charge=PRICE)
    assert final is not None and (final.charged, final.held) == (PRICE, 0)


def test_the_next_voucher_after_a_lapse_gets_the_state_before_the_dead_request(
    sqlite_store: ChannelStore,
) -> None:
    ch = Channel()
    ch.open(sqlite_store)
    done = _hold(sqlite_store, ch, PRICE)
    assert isinstance(done, ChargeAccepted) and done.hold is not None
    assert sqlite_store.update_hold(done.hold, charge=PRICE) is not None
    assert isinstance(_hold(sqlite_store, ch, 2 * PRICE, hold_s=0.05), ChargeAccepted)
    time.sleep(0.1)
    # A payer that assumed the dead request was charged signs the next cumulative.
    ahead = _hold(sqlite_store, ch, 3 * PRICE)
    assert isinstance(ahead, ChargeRefused) and ahead.reason == ERR_CUMULATIVE_AMOUNT_MISMATCH
    assert ahead.record is not None
    assert ahead.record.channel_state().charged_cumulative_amount == PRICE
    proof = ahead.record.voucher_state()  # the payer's own highest voucher, to check
    assert proof is not None and proof.signed_max_claimable == 2 * PRICE
    again = _hold(sqlite_store, ch, 2 * PRICE)
    assert isinstance(again, ChargeAccepted) and again.hold is not None
    final = sqlite_store.update_hold(again.hold, charge=PRICE)
    assert final is not None and (final.charged, final.held, final.signed_max) == (
        2 * PRICE,
        0,
        2 * PRICE,
    )


def test_a_hold_moves_only_what_it_holds(sqlite_store: ChannelStore) -> None:
    ch = Channel()
    ch.open(sqlite_store)
    held = _hold(sqlite_store, ch, PRICE)
    assert isinstance(held, ChargeAccepted) and held.hold is not None
    with pytest.raises(Exception, match="more than it holds"):
        sqlite_store.update_hold(held.hold, charge=PRICE, keep=1)
    with pytest.raises(Exception, match="non-negative"):
        sqlite_store.update_hold(held.hold, charge=-1)
    with pytest.raises(Exception, match="hold_s"):
        _hold(sqlite_store, ch, PRICE, hold_s=0)
    # Shrunk to what a metered handler charged, then final.
    shrunk = sqlite_store.update_hold(held.hold, keep=370)
    assert shrunk is not None and (shrunk.charged, shrunk.held) == (0, 370)
    small = type(held.hold)(ch.id, 370, held.hold.epoch, 0, 0)
    final = sqlite_store.update_hold(small, charge=370, known=shrunk)
    assert final is not None and (final.charged, final.held) == (370, 0)


def test_a_table_made_before_holds_gets_the_columns_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    url = f"sqlite:///{path}"
    ch = Channel()
    first = ChannelStore(url, domain=DOMAIN, network=NETWORK)
    ch.open(first)
    first.dispose()
    with sqlite3.connect(path) as old:  # the table as older code made it
        for column in ("held", "held_until_ns", "hold_epoch"):
            old.execute(f"ALTER TABLE paywall_channel DROP COLUMN {column}")
    reopened = ChannelStore(url, domain=DOMAIN, network=NETWORK)
    try:
        record = reopened.get(ch.id)
        assert record is not None and (record.held, record.hold_epoch) == (0, 0)
        assert isinstance(_hold(reopened, ch, PRICE), ChargeAccepted)
    finally:
        reopened.dispose()


# ---------------------------------------------------------------- the middleware


@pytest.fixture(name="channel_store")
def channel_store_fixture(chain_env: ChainEnv, tmp_path: Path) -> Iterator[ChannelStore]:
    place_channel_contracts(chain_env.chain)
    opened = ChannelStore(
        f"sqlite:///{tmp_path / 'paywall.sqlite'}",
        domain=ChannelDomain(chain_env.chain.chain_id),
        network=chain_env.chain.network,
        escrow=ChannelEscrow(chain_env.chain),
    )
    yield opened
    opened.dispose()


class _Gate:
    """A handler that waits until the test opens it (one request at a time in the gate)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def slow(self, request: Request) -> Response:
        self.entered.set()
        await self.open.wait()
        return JSONResponse({"secret": "paid-data", "slow": True})


async def _fast(request: Request) -> Response:
    return JSONResponse({"secret": "paid-data"})


def _app(
    env: ChainEnv,
    store: PaymentStore,
    channels: ChannelStore,
    authorizer: LocalSigner,
    gate: _Gate,
    **channel_options: Any,
) -> PaywallMiddleware:
    inner = Starlette(routes=[Route("/api/data", _fast), Route("/api/slow", gate.slow)])
    return PaywallMiddleware(
        inner,
        options=PaywallOptions(
            routes=[PaidRoute("/api/**", PRICE_ATOMIC, schemes=("batch-settlement",))],
            facilitator=env.facilitator(),
            store=store,
            pay_to=env.merchant,
            asset=env.asset,
            channels=ChannelOptions(
                channels,
                authorizer,
                withdraw_delay_s=DELAY_S,
                claim_in_background=False,
                **channel_options,
            ),
        ),
    )


def _error(response: Any) -> str:
    challenge: dict[str, Any] = unb64_json(response.headers["payment-required"])
    return str(challenge["error"])


def test_an_answer_that_cannot_be_sent_is_not_charged(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer, p = chain_env, LocalSigner.generate(), PRICE_ATOMIC
    ch = _Channel(env, authorizer)
    app = _app(env, store, channel_store, authorizer, _Gate())

    async def go() -> None:
        async with asgi_client(app) as http:
            first = await http.get("/api/data", headers=ch.header(ch.deposit(20 * p, p)))
            assert first.status_code == 200, first.text
        # The connection is gone when the answer is sent: the server's send fails.
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/data",
            "raw_path": b"/api/data",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                *[(k.encode(), v.encode()) for k, v in ch.header(ch.voucher(2 * p)).items()],
            ],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                raise OSError("the client went away")

        with pytest.raises(OSError, match="went away"):
            await app(scope, receive, send)
        (record,) = channel_store.records()
        assert (record.charged, record.held) == (p, 0), "charged for an answer never sent"
        # The retry of the same voucher is served, and charged once.
        async with asgi_client(app) as http:
            retry = await http.get("/api/data", headers=ch.header(ch.voucher(2 * p)))
            assert retry.status_code == 200, retry.text
            assert retry.json() == {"secret": "paid-data"}

    asyncio.run(go())
    (record,) = channel_store.records()
    assert (record.charged, record.held, record.signed_max) == (2 * p, 0, 2 * p)


def test_a_copy_of_a_voucher_still_being_answered_is_busy_not_stale(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer, p = chain_env, LocalSigner.generate(), PRICE_ATOMIC
    ch = _Channel(env, authorizer)
    gate = _Gate()
    app = _app(env, store, channel_store, authorizer, gate)

    async def go() -> None:
        async with asgi_client(app) as http:
            first = await http.get("/api/data", headers=ch.header(ch.deposit(20 * p, p)))
            assert first.status_code == 200, first.text
            header = ch.header(ch.voucher(2 * p))
            slow = asyncio.ensure_future(http.get("/api/slow", headers=header))
            await asyncio.wait_for(gate.entered.wait(), 30)
            copy = await http.get("/api/data", headers=header)
            assert copy.status_code == 402
            assert _error(copy) == ERR_CHANNEL_BUSY
            gate.open.set()
            answered = await slow
            assert answered.status_code == 200, answered.text
            state = unb64_json(answered.headers["payment-response"])["extra"]["channelState"]
            assert state["chargedCumulativeAmount"] == str(2 * p)
            # Once answered, the same copy is stale: the corrective 402.
            late = await http.get("/api/data", headers=header)
            assert late.status_code == 402 and _error(late) == ERR_CUMULATIVE_AMOUNT_MISMATCH

    asyncio.run(go())
    (record,) = channel_store.records()
    assert (record.charged, record.held) == (2 * p, 0)


def test_a_handler_that_outlives_its_lease_after_a_takeover_sends_nothing(
    chain_env: ChainEnv, store: PaymentStore, channel_store: ChannelStore
) -> None:
    env, authorizer, p = chain_env, LocalSigner.generate(), PRICE_ATOMIC
    ch = _Channel(env, authorizer)
    gate = _Gate()
    lease_s = 0.3
    app = _app(env, store, channel_store, authorizer, gate, charge_lease_s=lease_s)

    async def go() -> None:
        async with asgi_client(app) as http:
            first = await http.get("/api/data", headers=ch.header(ch.deposit(20 * p, p)))
            assert first.status_code == 200, first.text
            header = ch.header(ch.voucher(2 * p))
            slow = asyncio.ensure_future(http.get("/api/slow", headers=header))
            await asyncio.wait_for(gate.entered.wait(), 30)
            await asyncio.sleep(lease_s + 0.2)  # its hold lapsed: the payer retries
            retry = await http.get("/api/data", headers=header)
            assert retry.status_code == 200, retry.text
            gate.open.set()
            stale = await slow
            # Its charge was taken over: it may not send the content unpaid.
            assert stale.status_code == 402 and _error(stale) == ERR_CHANNEL_BUSY
            assert "paid-data" not in stale.text

    asyncio.run(go())
    (record,) = channel_store.records()
    assert (record.charged, record.held) == (2 * p, 0)
