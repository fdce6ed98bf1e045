"""A settlement always starts with at least nine tenths of a lease, and a quick handler costs no renewal.

The middleware over ``httpx.ASGITransport`` with a real SQLite store (counting
its renewals) and the paywall tests' chain: a handler that answers at once settles
on the claim's own lease, with no write between claim and settlement; a
handler that outlasts a tenth of the lease has the lease renewed before the
settlement, and both are paid, settled and delivered once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from farthing.paywall import PaymentState, PaymentStore, PaywallMiddleware, PaywallOptions
from tests.paywall.conftest import (
    PRICE_ATOMIC,
    ChainEnv,
    asgi_client,
    challenge_of,
    default_routes,
    inner_app,
    run,
    sign_for,
)

LEASE_S = 2.0


class RenewalCountingStore(PaymentStore):
    """The real SQLite store, counting the leases it renews."""

    renewals = 0

    def renew(self, *args: Any, **kwargs: Any) -> bool:
        self.renewals += 1
        return super().renew(*args, **kwargs)


@pytest.fixture
def counting(tmp_path: Path) -> Iterator[RenewalCountingStore]:
    store = RenewalCountingStore(f"sqlite:///{tmp_path / 'paywall.sqlite'}")
    yield store
    store.dispose()


def _slowed(app: Any, delay_s: float) -> Any:
    async def slowed(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(delay_s)
        await app(scope, receive, send)

    return slowed


def _buy(env: ChainEnv, store: PaymentStore, delay_s: float) -> httpx.Response:
    app = PaywallMiddleware(
        _slowed(inner_app(), delay_s),
        options=PaywallOptions(
            routes=default_routes(),
            facilitator=env.facilitator(),
            store=store,
            pay_to=env.merchant,
            asset=env.asset,
            claim_lease_s=LEASE_S,
        ),
    )

    async def go() -> httpx.Response:
        async with asgi_client(app) as client:
            challenge = await client.get("/api/data")
            header = sign_for(challenge_of(challenge)["accepts"][0], env.new_payer())
            return await client.get("/api/data", headers={"PAYMENT-SIGNATURE": header})

    response: httpx.Response = run(go())
    return response


@pytest.mark.parametrize(("delay_s", "renewals"), [(0.0, 0), (0.5, 1)])
def test_the_lease_is_renewed_only_when_the_handler_used_a_tenth_of_it(
    chain_env: ChainEnv, counting: RenewalCountingStore, delay_s: float, renewals: int
) -> None:
    response = _buy(chain_env, counting, delay_s)
    assert response.status_code == 200, response.text
    assert response.json()["secret"] == "paid-data"
    assert counting.renewals == renewals
    (record,) = counting.records()
    assert record.state == PaymentState.SETTLED and record.delivered
    assert record.amount == PRICE_ATOMIC
