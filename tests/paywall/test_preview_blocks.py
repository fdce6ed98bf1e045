"""A route may name its free part in whole blocks (`preview_blocks`) as well as by share.

The cut is checked on known articles (HTML and markdown), with blocks alone
and with both rules (the shorter wins, and never the whole article); the
config file's `preview_blocks` is read and bad values are refused; and a real
paywalled app on anvil gives the first N paragraphs in its JSON 402 and its
browser page, and nothing after them.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from farthing.paywall import PaidRoute, PaymentStore
from farthing.paywall.edge.preview import split_html, split_text
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.site.config import load_config
from farthing.paywall.wire import unb64_json
from tests.paywall.conftest import ChainEnv, asgi_client, paywalled, run

NINE = (
    "<article>" + "".join(f"<p>para {i} {'x' * (5 * i)}</p>" for i in range(1, 10)) + "</article>"
)


def test_blocks_alone_take_that_many_whole_paragraphs() -> None:
    three = split_html(NINE, Decimal(1), blocks=3)
    assert "para 3" in three and "para 4" not in three
    assert three.endswith("</p></article>")
    assert split_html(NINE, Decimal(1), blocks=100).count("<p>") == 8  # never the whole


def test_with_both_rules_the_shorter_wins() -> None:
    by_share = split_html(NINE, Decimal("0.33"))
    assert split_html(NINE, Decimal("0.33"), blocks=1).count("<p>") == 1
    assert split_html(NINE, Decimal("0.33"), blocks=9) == by_share


def test_markdown_counts_paragraphs_not_blank_lines() -> None:
    text = "one\n\n\n\ntwo\n\nthree\n\nfour\n"
    assert split_text(text, Decimal(1), blocks=2) == "one\n\n\n\ntwo\n"


def test_the_config_reads_preview_blocks_and_refuses_bad_values(tmp_path: Path) -> None:
    def config(value: str) -> Path:
        path = tmp_path / "farthing.toml"
        path.write_text(
            'upstream = "http://127.0.0.1:4000"\npay_to = "0x' + "ab" * 20 + '"\n'
            'rpc_url = "http://127.0.0.1:8545"\ntoken = "0x' + "cd" * 20 + '"\n'
            f'[[routes]]\npath = "/posts/**"\nprice = "0.01 USDC"\npreview_blocks = {value}\n'
        )
        return path

    assert load_config(config("3")).routes[0].preview_blocks == 3
    for bad in ('"3"', "2.5", "true"):
        with pytest.raises(PaywallConfigError, match="preview_blocks"):
            load_config(config(bad))


@pytest.mark.anvil
def test_a_paywall_with_preview_blocks_shows_exactly_those(
    chain_env: ChainEnv, store: PaymentStore
) -> None:
    # The article's blocks: a heading, two free-looking paragraphs, two paid ones.
    route = PaidRoute("/articles/*", "0.01 USDC", mime_type="text/html", preview_blocks=2)
    app = paywalled(chain_env, store, routes=[route])

    async def go() -> Any:
        async with asgi_client(app) as client:
            api = await client.get("/articles/farthing")
            page = await client.get("/articles/farthing", headers={"accept": "text/html"})
            return api, page

    api, page = run(go())
    assert api.status_code == page.status_code == 402
    preview = api.json()["preview"]
    assert "<h1>The farthing</h1>" in preview and "quarter of a penny" in preview
    assert "silver" not in preview and "PAID-PART" not in preview
    assert "quarter of a penny" in page.text and "silver" not in page.text
    assert "PAID-PART" not in page.text
    assert api.json()["previewBlocks"] == "2"
    challenge: dict[str, Any] = unb64_json(api.headers["payment-required"])
    assert challenge["accepts"][0]["amount"] == "10000"
