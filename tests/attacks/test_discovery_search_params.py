"""Anyone querying the facilitator's open catalog (``/discovery/resources``, ``/discovery/search``) gets a ``limit`` or ``offset`` in non-ASCII digits accepted, or a search widened by a NUL.

Found from outside against ``farthing facilitator serve``: ``limit=１`` and
``offset=٣`` answered 200, because ``str.isdigit`` and ``int`` take any
Unicode decimal digit, while docs/discovery.md promises whole numbers and
``maxAmount`` already took ASCII digits only; and ``query=blog%00zzz``
listed everything matching ``blog``, because a NUL ends SQLite's ``LIKE``
pattern. Both are now a 400 ``invalid_query`` (numbers are ASCII digits, no
parameter holds a control character). Here the real catalog routes over a
SQLite catalog, through ``httpx.ASGITransport``; ASCII numbers still work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from farthing.paywall.discovery import Catalog
from farthing.paywall.discovery.listing import catalog_routes


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    catalog = Catalog.sqlite(tmp_path / "facilitator.sqlite")
    yield Starlette(routes=catalog_routes(catalog))
    catalog.dispose()


def _get(app: Starlette, path: str, params: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f") as http:
            return await http.get(path, params=params)

    return asyncio.run(go())


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("digits", ["\uff11", "\u0663", "\u0b67\u0b66", "\U0001d7cf"])
def test_non_ascii_digits_are_refused(app: Starlette, name: str, digits: str) -> None:
    answer = _get(app, "/discovery/resources", {name: digits})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_query"


def test_non_ascii_digits_in_a_search_limit_are_refused(app: Starlette) -> None:
    answer = _get(app, "/discovery/search", {"query": "weather", "limit": "\uff15"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_query"


def test_ascii_numbers_still_work(app: Starlette) -> None:
    answer = _get(app, "/discovery/resources", {"limit": "5", "offset": "10"})
    assert answer.status_code == 200
    assert answer.json()["pagination"] == {"limit": 5, "offset": 10, "total": 0}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/discovery/search", {"query": "blog\x00zzz"}),
        ("/discovery/search", {"query": "weather", "tag": "\x00"}),
        ("/discovery/resources", {"network": "eip155:1\x00x"}),
        ("/discovery/resources", {"payTo": "\x1b[2J"}),
    ],
)
def test_a_control_character_in_a_parameter_is_refused(
    app: Starlette, path: str, params: dict[str, str]
) -> None:
    # Found: a NUL cut SQLite's LIKE pattern short, so "blog\0zzz" searched for "blog".
    answer = _get(app, path, params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_query"
