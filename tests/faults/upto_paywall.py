"""A seller that pays out one ``upto`` request through the paywall, for the crash tests to kill.

Run as ``python tests/faults/upto_paywall.py SPEC_JSON`` with ``FARTHING_CRASH_AT``
naming an ``upto`` crash point: it builds the ``PaywallMiddleware`` of
``tests/faults/test_upto_crash.py`` (the same route, payee, token, settling
key and database files), answers the one request carrying ``header`` through
``httpx.ASGITransport``, and dies by SIGKILL at the armed point. Should it
live to the end, it prints the status and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farthing.ledger import LedgerDatabase, LedgerSettings
from farthing.paywall import PaidRoute, PaymentStore, PaywallMiddleware, PaywallOptions
from farthing.paywall.facilitator.local import LocalFacilitator
from farthing.paywall.records.books import LedgerRevenueBook
from farthing.wallet.chain import RpcChain
from farthing.wallet.token import read_asset


def seller(spec: dict[str, Any], chain: RpcChain) -> tuple[PaywallMiddleware, PaymentStore, Any]:
    """The seller's middleware over the spec's database files; also used by the test."""

    async def metered(request: Request) -> Response:
        return JSONResponse({"tokens": 42}, headers={"Farthing-Charge": str(spec["used"])})

    store = PaymentStore.sqlite(spec["payments"])
    ledger = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{spec['ledger']}"))
    relayer = chain.dev_accounts()[spec["relayer_index"]].signer()
    app = PaywallMiddleware(
        Starlette(routes=[Route("/chat", metered)]),
        options=PaywallOptions(
            routes=[PaidRoute("/chat", spec["ceiling"], schemes=("upto",))],
            facilitator=LocalFacilitator(chain, relayer),
            store=store,
            books=LedgerRevenueBook(ledger),
            pay_to=spec["pay_to"],
            asset=read_asset(chain, spec["token"]),
            claim_lease_s=spec["lease_s"],
        ),
    )
    return app, store, ledger


async def _pay(app: Any, header: str) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
        response = await client.get("/chat", headers={"PAYMENT-SIGNATURE": header})
    return response.status_code


def main() -> None:
    spec = json.loads(sys.argv[1])
    chain = RpcChain(spec["rpc_url"])
    app, store, ledger = seller(spec, chain)
    status = asyncio.run(_pay(app, spec["header"]))
    print(status, flush=True)
    store.dispose()
    ledger.dispose()
    chain.close()


if __name__ == "__main__":
    main()
