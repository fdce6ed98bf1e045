"""The catalog's HTTP endpoints, as specs/extensions/bazaar.md names them.

- ``GET /discovery/resources``: the list; filters ``type``, ``payTo``,
  ``scheme``, ``network``, ``extensions``; ``limit`` and ``offset``; answers
  ``{"x402Version":2,"items":[…],"pagination":{"limit","offset","total"}}``.
- ``GET /discovery/search``: the same filters plus ``query`` (every word must
  appear in the URL, description, service name, tool name or tags); ``limit``
  and ``cursor`` (an opaque continuation); answers
  ``{"x402Version":2,"resources":[…],"partialResults",
  "pagination":{"limit","cursor"}}``.

Both also take Farthing's filters ``tag``, ``asset`` and ``maxAmount`` (a price
ceiling in the asset's atomic units, a decimal string; with ``asset`` it
means that asset's units). Every parameter is bounded before the database
sees it: at most :data:`PARAM_CHARS_MAX` characters, eight words,
``limit`` 1 to :data:`LIMIT_MAX`, ``offset`` at most :data:`OFFSET_MAX`; a
bad one is a 400 with a reason, never a 500. Anyone may read the catalog:
its entries are public data, and they are untrusted input to whoever reads
them (a seller wrote them).
"""

from __future__ import annotations

import re
from typing import Any, Final

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from farthing.paywall.discovery.catalog import Catalog, Search
from farthing.paywall.errors import PaymentStoreError

__all__ = ["LIMIT_MAX", "OFFSET_MAX", "PARAM_CHARS_MAX", "catalog_routes"]

PARAM_CHARS_MAX: Final = 256
LIMIT_MAX: Final = 100
LIMIT_DEFAULT: Final = 20
OFFSET_MAX: Final = 10_000
WORDS_MAX: Final = 8
_KINDS: Final = frozenset({"http", "mcp"})
_DIGITS: Final = re.compile(r"[0-9]{1,78}")
_CURSOR: Final = re.compile(r"o([0-9]{1,5})")
# A NUL ends SQLite's LIKE pattern early ("blog\0zzz" searched for "blog"); no
# control character belongs in a search.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _BadQuery(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _param(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise _BadQuery(f"{name} given more than once")
    value = values[0]
    if len(value) > PARAM_CHARS_MAX:
        raise _BadQuery(f"{name} is longer than {PARAM_CHARS_MAX} characters")
    if _CONTROL.search(value):
        raise _BadQuery(f"{name} holds a control character")
    return value or None


def _number(request: Request, name: str, low: int, high: int, default: int) -> int:
    text = _param(request, name)
    if text is None:
        return default
    # ASCII digits only: str.isdigit and int() also take '１' and '٣'.
    if not _DIGITS.fullmatch(text) or len(text) > 6 or not low <= int(text) <= high:
        raise _BadQuery(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _search(request: Request, *, words: str | None, offset: int) -> Search | None:
    """The bounded filters of ``request``; None when they can match nothing (another extension)."""
    extension = _param(request, "extensions")
    if extension is not None and extension != "bazaar":
        return None
    kind = _param(request, "type")
    if kind is not None and kind not in _KINDS:
        raise _BadQuery("type must be http or mcp")
    amount_text = _param(request, "maxAmount")
    if amount_text is not None and not _DIGITS.fullmatch(amount_text):
        raise _BadQuery("maxAmount must be atomic units, a decimal string of digits")
    split = tuple(w for w in (words or "").split() if w)
    if len(split) > WORDS_MAX:
        raise _BadQuery(f"query may have at most {WORDS_MAX} words")
    return Search(
        words=split,
        tag=_param(request, "tag"),
        kind=kind,
        pay_to=_param(request, "payTo"),
        scheme=_param(request, "scheme"),
        network=_param(request, "network"),
        asset=_param(request, "asset"),
        amount_max=int(amount_text) if amount_text is not None else None,
        limit=_number(request, "limit", 1, LIMIT_MAX, LIMIT_DEFAULT),
        offset=offset,
    )


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_query", "message": message}, status_code=400)


def _unavailable() -> JSONResponse:
    return JSONResponse(
        {"error": "unavailable", "message": "the catalog's database did not answer"},
        status_code=503,
    )


def catalog_routes(catalog: Catalog) -> list[Route]:
    """The two GET endpoints over ``catalog``, to mount in the facilitator's app."""

    async def run(search: Search) -> Any:
        return await anyio.to_thread.run_sync(catalog.search, search)

    async def resources(request: Request) -> JSONResponse:
        try:
            offset = _number(request, "offset", 0, OFFSET_MAX, 0)
            search = _search(request, words=None, offset=offset)
        except _BadQuery as exc:
            return _bad(exc.message)
        limit = search.limit if search is not None else LIMIT_DEFAULT
        if search is None:
            return JSONResponse(
                {
                    "x402Version": 2,
                    "items": [],
                    "pagination": {"limit": limit, "offset": offset, "total": 0},
                }
            )
        try:
            page = await run(search)
        except PaymentStoreError:
            return _unavailable()
        pagination = {"limit": search.limit, "offset": offset, "total": page.total}
        return JSONResponse({"x402Version": 2, "items": page.items, "pagination": pagination})

    async def search_endpoint(request: Request) -> JSONResponse:
        try:
            query = _param(request, "query")
            if query is None or not query.strip():
                raise _BadQuery("query is required")
            cursor = _param(request, "cursor")
            offset = 0
            if cursor is not None:
                match = _CURSOR.fullmatch(cursor)
                if match is None or int(match[1]) > OFFSET_MAX:
                    raise _BadQuery("cursor is not one this catalog gave")
                offset = int(match[1])
            search = _search(request, words=query, offset=offset)
        except _BadQuery as exc:
            return _bad(exc.message)
        if search is None:
            return JSONResponse(
                {"x402Version": 2, "resources": [], "partialResults": False, "pagination": None}
            )
        try:
            page = await run(search)
        except PaymentStoreError:
            return _unavailable()
        after = offset + len(page.items)
        more = after < page.total and after <= OFFSET_MAX
        return JSONResponse(
            {
                "x402Version": 2,
                "resources": page.items,
                "partialResults": more,
                "pagination": {"limit": search.limit, "cursor": f"o{after}" if more else None},
            }
        )

    return [
        Route("/discovery/resources", resources, methods=["GET"]),
        Route("/discovery/search", search_endpoint, methods=["GET"]),
    ]
