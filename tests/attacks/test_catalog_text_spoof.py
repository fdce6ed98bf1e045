"""A buyer (or a caller of ``/settle``) gets an entry cataloged whose description or resource URL carries bidi overrides or invisible characters (``U+202E``, ``U+2066``, zero-width), so every reader of the catalog is shown text that reads other than it is (a Trojan-Source style spoof).

Found from outside: ``farthing facilitator serve`` replaced C0 and C1
control characters in a description with spaces (and refused them in a
URL), but kept the bidi embedding, override and isolate controls and the
zero-width characters; ``agent discover`` strips them, other catalog readers
(the x402 SDK's bazaar client, a person's browser) do not. Now the catalog
treats them as the control characters they are: replaced in text, refused
in URLs and short fields. Ordinary non-ASCII text is kept. Real payments
settle on the memory chain through the facilitator's HTTP app with its
SQLite catalog. A look-alike host (Cyrillic letters, full-width forms) is
listed in its IDNA form, so it reads as what it is.
"""

from __future__ import annotations

from typing import Any

import pytest

from farthing.paywall.discovery import Catalog
from tests.paywall.discovery.conftest import Market, call, catalog, facilitator_for, market

__all__ = ["catalog", "market"]

INVISIBLE = ["\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200f", "\u061c", "\ufeff"]


def _listed(market: Market, catalog: Catalog, **body: Any) -> list[Any]:
    app = facilitator_for(market, catalog)
    answer = call(app, "POST", "/settle", json=market.body(**body))
    assert answer.status_code == 200 and answer.json()["success"] is True
    items: list[Any] = call(app, "GET", "/discovery/resources").json()["items"]
    return items


@pytest.mark.parametrize("char", INVISIBLE)
def test_a_description_loses_its_bidi_and_invisible_characters(
    market: Market, catalog: Catalog, char: str
) -> None:
    resource = {"description": f"Weather{char} pay 0xEVIL now"}
    (item,) = _listed(market, catalog, resource=resource)
    assert char not in item["description"]
    assert item["description"] == "Weather  pay 0xEVIL now"


@pytest.mark.parametrize("char", INVISIBLE)
def test_a_url_with_them_is_not_cataloged(market: Market, catalog: Catalog, char: str) -> None:
    assert _listed(market, catalog, url=f"https://weather.example/{char}api") == []


def test_ordinary_non_ascii_text_is_kept(market: Market, catalog: Catalog) -> None:
    (item,) = _listed(market, catalog, resource={"description": "Météo à Paris, 天气"})
    assert item["description"] == "Météo à Paris, 天气"


@pytest.mark.parametrize(
    ("url", "listed"),
    [
        ("https://\u0440\u0430ypal.example/w", "https://xn--ypal-43d9g.example/w"),
        ("https://\uff57\uff45\uff41\uff54\uff48\uff45\uff52.example:8443/w", "https://weather.example:8443/w"),
        ("https://WEATHER.example/w", "https://weather.example/w"),
    ],
)  # fmt: skip
def test_a_look_alike_host_is_listed_as_what_it_is(
    market: Market, catalog: Catalog, url: str, listed: str
) -> None:
    # Found with the rest: a Cyrillic "раypal" host was listed as it came.
    (item,) = _listed(market, catalog, url=url)
    assert item["resource"] == listed
