"""An ``upto`` seller killed by SIGKILL between settling and recording recovers: the payer gets the content, charged once, booked once at the charge.

For each ``upto`` crash point, a real child process (``upto_paywall.py``: the
paywall middleware with a short claim lease, a SQLite payment file and a
SQLite ledger) answers one ``upto`` payment on anvil and dies by SIGKILL at
the armed point, after its settlement moved the charge on chain. Then, in
this process, the dead owner's lease runs out and a new seller over the same
files recovers: after ``paywall.upto.after_receipt`` (the row still claimed,
its transaction not recorded) the sweep runs first, as a cron job might, and
finds the settlement in the proxy's logs; after ``paywall.upto.after_mark``
(settled, unbooked, undelivered) the payer's retry comes first. Either way
the retry with the same header gets the content with the charge's
``PAYMENT-RESPONSE``, the chain moved the charge once, the revenue is booked
once at the charge (never the ceiling), and a further retry gets a 402.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.faults import CRASH_AT_ENV
from farthing.ledger import LedgerDatabase, LedgerSettings, revenue_report, upgrade_database
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.facilitator.resolve import sweep
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.paywall.records.payments import PaymentKey, PaymentState
from farthing.paywall.schemes.upto.client import approve_permit2, payment_header
from farthing.paywall.schemes.upto.contract import place_upto_contracts
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.wallet.chain import RpcChain
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests import zygote
from tests.faults.harness import REPO, SIGKILLED
from tests.faults.upto_paywall import seller
from tests.paywall.upto.conftest import CEILING, FUNDS, UptoEnv

pytestmark = pytest.mark.anvil

# Where the seller dies; whether the sweep gets there before the payer's retry.
POINTS = {"paywall.upto.after_receipt": True, "paywall.upto.after_mark": False}
USED = 1_234
LEASE_S = 1.0
WORKER = Path(__file__).with_name("upto_paywall.py")


@pytest.fixture
def upto_env(anvil_chain: RpcChain) -> UptoEnv:
    """As ``tests/paywall/upto/conftest.py`` builds it, on the session's anvil."""
    chain = anvil_chain
    place_upto_contracts(chain)
    owner, payer, payee, relayer, outsider = (a.signer() for a in chain.dev_accounts()[:5])
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    assert token.mint(payer.address, FUNDS, sender=owner).ok
    assert approve_permit2(chain, payer, asset.address).ok
    fresh = LocalSigner.generate()
    return UptoEnv(
        chain, asset, token, owner, payer, payee, relayer, outsider, fresh,
        UptoFacilitator(chain, relayer),
    )  # fmt: skip


def _get(app: Any, header: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
            return await client.get("/chat", headers={"PAYMENT-SIGNATURE": header})

    return asyncio.run(go())


@pytest.mark.parametrize("point", list(POINTS))
def test_an_upto_seller_killed_after_settling_recovers_once(
    point: str, upto_env: UptoEnv, tmp_path: Path
) -> None:
    env = upto_env
    assert isinstance(env.chain, RpcChain) and env.chain.rpc_url
    assert env.chain.dev_accounts()[3].address == env.relayer.address
    ledger_path = tmp_path / "ledger.sqlite"
    upgrade_database(LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{ledger_path}")))
    payment = env.pay(env.offer())
    header = payment_header(payment)
    spec = {
        "rpc_url": env.chain.rpc_url,
        "payments": str(tmp_path / "paywall.sqlite"),
        "ledger": str(ledger_path),
        "relayer_index": 3,  # env.relayer
        "token": env.asset.address,
        "pay_to": env.payee.address,
        "ceiling": CEILING,
        "used": USED,
        "lease_s": LEASE_S,
        "header": header,
    }
    died = zygote.run_process(
        [sys.executable, str(WORKER), json.dumps(spec)],
        env={"PATH": "/usr/bin:/bin", CRASH_AT_ENV: point},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert died.returncode == SIGKILLED, died.stderr[-2000:]
    assert env.balance(env.payee) == USED  # the settlement went through before the kill
    auth = payment.authorization
    key = PaymentKey(
        env.chain.network, env.asset.address, auth.from_address, f"0x{auth.nonce:064x}"
    )
    app, store, ledger = seller(spec, env.chain)
    try:
        left = store.get(key)
        assert left is not None and not left.delivered and not left.booked
        assert left.state == (
            PaymentState.CLAIMED if point.endswith("after_receipt") else PaymentState.SETTLED
        )
        time.sleep(LEASE_S + 0.2)  # the dead owner's lease runs out
        facilitator = LocalFacilitator(env.chain, env.relayer)
        books = LedgerRevenueBook(ledger)
        if POINTS[point]:
            early = sweep(store, facilitator, books)
            assert (early.settled, early.booked, early.still_pending) == (1, 1, 0)
        retry = _get(app, header)
        assert retry.status_code == 200 and retry.json() == {"tokens": 42}, retry.text
        settlement = json.loads(base64.b64decode(retry.headers["PAYMENT-RESPONSE"]))
        assert (settlement["success"], settlement["amount"]) == (True, str(USED))
        late = sweep(store, facilitator, books)
        assert (late.settled, late.booked, late.still_pending) == (0, 0, 0)
        record = store.get(key)
        assert record is not None and record.state == PaymentState.SETTLED
        assert (record.settled_amount, record.booked, record.delivered) == (USED, True, True)
        with ledger.read() as session:
            rows = revenue_report(session=session, payee_address=env.payee.address)
        assert [(r.posted, r.payment_count) for r in rows] == [(USED, 1)]
        assert env.balance(env.payer) == FUNDS - USED and env.balance(env.payee) == USED
        assert _get(app, header).status_code == 402
    finally:
        store.dispose()
        ledger.dispose()
