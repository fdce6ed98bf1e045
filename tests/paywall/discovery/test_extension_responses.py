"""The facilitator tells the seller, never the buyer, what became of a payment's bazaar declaration (``EXTENSION-RESPONSES``).

x402 v2 §7.2.1 and the bazaar spec: a facilitator MAY add the
``EXTENSION-RESPONSES`` header (base64 JSON keyed by extension) to its
verify and settle answers, for the resource server only. Real payments on
the memory chain through ``facilitator_app`` with its SQLite catalog:
``processing`` for a declaration that will be cataloged, ``rejected`` with
the reason for one that will not (a resource that is not http(s), a payment
that was refused), no header without a declaration or a catalog; the x402
SDK's facilitator client reads it; our ``RemoteFacilitator`` logs it (a
hostile header is one bounded line or nothing); and a sale through our
paywall (``PaywallMiddleware``) answers the buyer without it.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from x402.http import HTTPFacilitatorClientSync
from x402.schemas import PaymentPayload as SdkPayload
from x402.schemas import PaymentRequirements as SdkRequirements

from farthing.paywall import PaymentStore, RemoteFacilitator
from farthing.paywall.discovery import Catalog
from farthing.paywall.facilitator.remote import _log_extension_responses
from farthing.paywall.wire import unb64_json
from farthing.wallet.chain.memory import MemoryChain
from farthing.wallet.token import Stablecoin, deploy_stablecoin
from tests.paywall.conftest import run, serve_in_thread, sign_for
from tests.paywall.discovery.conftest import Market, call, facilitator_for
from tests.paywall.discovery.test_declarations import SITE, _paywall


@pytest.fixture(scope="module")
def market() -> Iterator[Market]:
    """A market on a memory chain of this module's own: its blocks move no other module's clock."""
    chain = MemoryChain(accounts=5)
    accounts = chain.dev_accounts()
    owner, relayer = accounts[0].signer(), accounts[4].signer()
    asset = deploy_stablecoin(chain, sender=owner)
    token = Stablecoin(chain, asset)
    assert token.configure_minter(owner.address, sender=owner).ok
    yield Market(chain, asset, token, owner, relayer)
    chain.close()


def _side_channel(response: httpx.Response) -> Any:
    value = response.headers.get("extension-responses")
    return None if value is None else unb64_json(value)


def test_the_facilitator_says_processing_or_rejected_and_why(
    market: Market, catalog: Catalog
) -> None:
    app = facilitator_for(market, catalog)
    settled = call(app, "POST", "/settle", json=market.body())
    assert settled.json()["success"] is True
    assert _side_channel(settled) == {"bazaar": {"status": "processing"}}
    verified = call(app, "POST", "/verify", json=market.body())
    assert _side_channel(verified) == {"bazaar": {"status": "processing"}}

    ftp = call(app, "POST", "/settle", json=market.body(url="ftp://weather.example/now"))
    assert ftp.json()["success"] is True  # the payment is not the catalog's business
    rejected = _side_channel(ftp)["bazaar"]
    assert rejected["status"] == "rejected"
    assert rejected["rejectedReason"].startswith("invalid_resource_url")

    refused_body = market.body()
    refused_body["paymentRequirements"]["amount"] = "1"  # not what was signed
    refused = call(app, "POST", "/settle", json=refused_body)
    assert refused.json()["success"] is False
    assert _side_channel(refused) == {
        "bazaar": {"status": "rejected", "rejectedReason": "the payment was not accepted"}
    }

    plain = market.body()
    del plain["paymentPayload"]["extensions"]
    assert "extension-responses" not in call(app, "POST", "/settle", json=plain).headers
    no_catalog = call(facilitator_for(market, None), "POST", "/settle", json=market.body())
    assert "extension-responses" not in no_catalog.headers
    listed = [i["resource"] for i in call(app, "GET", "/discovery/resources").json()["items"]]
    assert set(listed) == {"https://weather.example/api/weather"}  # one per payee, none for ftp


def test_the_x402_sdks_facilitator_client_reads_it(market: Market, catalog: Catalog) -> None:
    body = market.body()
    with serve_in_thread(facilitator_for(market, catalog)) as url:
        client = HTTPFacilitatorClientSync({"url": url})
        try:
            settled = client.settle(
                SdkPayload.model_validate(body["paymentPayload"]),
                SdkRequirements.model_validate(body["paymentRequirements"]),
            )
        finally:
            client.close()
    assert settled.success is True
    assert settled.extension_responses == {"bazaar": {"status": "processing"}}


def test_our_remote_facilitator_logs_it_bounded(caplog: pytest.LogCaptureFixture) -> None:
    def header(value: Any) -> str:
        return base64.b64encode(json.dumps(value).encode()).decode()

    caplog.set_level(logging.INFO, logger="farthing.paywall.facilitator.remote")
    reason = "bad\x1b[31m" + "x" * 2000
    _log_extension_responses(
        header({"bazaar": {"status": "rejected", "rejectedReason": reason}}), "http://f", "/settle"
    )
    (line,) = caplog.messages
    assert "will not catalog" in line and "\x1b" not in line and len(line) < 400
    caplog.clear()
    for hostile in (
        "%%%not-base64",
        header([1, 2]),
        header({"bazaar": {"status": "owned"}}),
        header({"bazaar": "x"}),
        base64.b64encode(b"[" * 10_000).decode(),
        "A" * 100_000,
    ):
        _log_extension_responses(hostile, "http://f", "/settle")
    assert caplog.messages == []


def test_a_sale_through_our_paywall_never_hands_it_to_the_buyer(
    market: Market, catalog: Catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="farthing.paywall.facilitator.remote")
    transport = httpx.ASGITransport(app=facilitator_for(market, catalog))
    facilitator = RemoteFacilitator("http://facilitator.test", transport=transport)
    store = PaymentStore.sqlite(tmp_path / "paywall.sqlite")
    paywall = _paywall(market, store, SITE, facilitator=facilitator)
    payer = market.payer()

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=paywall)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            unpaid = await client.get("/api/weather")
            accepts = unb64_json(unpaid.headers["payment-required"])["accepts"][0]
            signature = sign_for(accepts, payer)
            paid = await client.get("/api/weather", headers={"PAYMENT-SIGNATURE": signature})
        await facilitator.aclose()
        return paid

    paid = run(go())
    store.dispose()
    assert paid.status_code == 200
    assert "extension-responses" not in paid.headers
    assert "extension-responses" not in paid.headers.get("access-control-expose-headers", "")
    assert any("catalogs the declaration (processing)" in m for m in caplog.messages)
