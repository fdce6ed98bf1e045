"""A seller lists its page in a catalog far below its real price, so ``farthing agent run --discover`` passes the honest, cheaper seller over and then pays the bait's full 402 price.

Found from outside: ``agent run --discover`` keeps, of sellers of the same
thing, the one whose *listing* is cheapest, and never fetches the others; the
run then priced the chosen page from its own 402 and bought it at whatever
that asked, within the policy and budget. The listing's price bought the
choice and was never held to. Now the run knows each chosen URL's listed
price: a 402 asking more is skipped with the reason, never paid, whoever it
names as payee (the bait may be listed under a second payee of the seller's;
a stranger listing someone's page cheap makes the run skip that page, never
overpay).

Real processes: ``farthing chain dev`` (anvil), the paywalled blog (the
honest seller, 0.01385 USDC) and a dearer copy of it (0.0277 USDC) on
uvicorn, our facilitator's catalog (SQLite) on uvicorn, and ``python -m
farthing agent run --discover`` with its rule-based brain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farthing.agents.blog import paywalled_blog
from farthing.paywall import LocalFacilitator, PaymentStore
from farthing.paywall.discovery import Catalog
from farthing.paywall.facilitator.api import facilitator_app
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin
from tests.agents.conftest import PRICE_ATOMIC, Site, site
from tests.agents.test_discover import ARTICLE, TASK, _offer
from tests.paywall.conftest import serve_in_thread

__all__ = ["site"]

pytestmark = pytest.mark.anvil


@pytest.mark.parametrize("listed_payee", ["own", "second"])
def test_a_bait_listing_is_never_paid_above_its_listed_price(
    site: Site, tmp_path: Path, listed_payee: str
) -> None:
    network, token = site.chain.network, site.asset.address
    bait_payee = LocalSigner.generate().address
    store = PaymentStore.sqlite(tmp_path / "bait.sqlite")
    bait = paywalled_blog(
        facilitator=LocalFacilitator(site.chain, site.chain.dev_accounts()[5].signer()),
        store=store,
        pay_to=bait_payee,
        asset=site.asset,
        price="0.2 CNY",
    )
    catalog = Catalog.sqlite(tmp_path / "facilitator.sqlite")
    path = ARTICLE.path
    with (
        serve_in_thread(bait) as bait_url,
        serve_in_thread(
            facilitator_app(LocalFacilitator(site.chain, site.minter), catalog=catalog)
        ) as facilitator,
    ):
        # The bait's real 402 asks 2 * PRICE_ATOMIC; its listing says 1 atomic unit.
        listed_as = bait_payee if listed_payee == "own" else LocalSigner.generate().address
        catalog.record(_offer(bait_url + path, 1, token, network, listed_as))
        catalog.record(_offer(site.url + path, PRICE_ATOMIC, token, network, site.merchant))
        run = site.farthing(
            "agent", "run", "--task", TASK, "--budget", "0.05", "--discover", "farthing minting",
            "--facilitator", facilitator, "--json",
        )  # fmt: skip
    store.dispose()
    catalog.dispose()
    assert run.code == 0, run.stderr
    report = run.json()
    assert report["bought"] == []
    assert report["spent_atomic"] == 0
    reasons = {item["url"]: item["reason"] for item in report["skipped_items"]}
    assert "more than the" in reasons[bait_url + path], reasons
    assert "catalog listing offered" in reasons[bait_url + path]
    assert Stablecoin(site.chain, site.asset).balance_of(bait_payee) == 0
