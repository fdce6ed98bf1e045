"""What can be bought: a facilitator's catalog, read by the agent as untrusted input.

:func:`discover` asks a facilitator's ``GET /discovery/search`` (the bazaar
list endpoint, ``farthing.paywall.discovery.listing``) and turns each item
into a :class:`Listing`. A catalog entry was written by a seller, so it is
read like a page: the answer is bounded (:data:`RESPONSE_BYTES_MAX`, a
timeout), an item that is not well formed is skipped, text is cut short and
stripped of control characters, a URL must be ``http(s)``, a price must be a
decimal string of atomic units. Nothing in a listing is ever paid on its
word: the agent still prices the resource from its own 402 and its policy
decides (``farthing.agents.payer``); the catalog only says where to look.

:func:`cheapest_sellers` keeps, of several sellers of the same thing (the
same kind of resource and the same description), the cheapest one in the
agent's own token; the others are passed over with the reason.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlsplit

import typer

from farthing.agents.admin_cli import (
    DatabaseOpt,
    JsonOpt,
    NetworkOpt,
    PayerAgentOpt,
    PayerDataDirOpt,
    RpcOpt,
    TokenOpt,
    WalletOpt,
    open_from_options,
)
from farthing.console import emit_json, fail, out_console

if TYPE_CHECKING:
    import httpx

    from farthing.paywall.discovery.resolver import Resolver
    from farthing.wallet.money import Asset

__all__ = [
    "RESPONSE_BYTES_MAX",
    "Found",
    "Listing",
    "PassedOver",
    "Starts",
    "cheapest_sellers",
    "discover",
    "discover_command",
    "discovered_starts",
]

FACILITATOR_URL_DEFAULT: Final = "http://127.0.0.1:8402"
RESPONSE_BYTES_MAX: Final = 1024 * 1024
TIMEOUT_S: Final = 10.0
# How long the names of one answer's listings may take to resolve, together.
RESOLVE_S_MAX: Final = 2.0
LIMIT_MAX: Final = 100
_TEXT_CHARS_MAX: Final = 200
_URL_CHARS_MAX: Final = 2048
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_DIGITS: Final = re.compile(r"[0-9]{1,78}")
_SHORT: Final = re.compile(r"[\x21-\x7e]{1,66}")
_LOCAL_NAMES: Final = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)
_LOCAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".home.arpa", ".lan")


class _Unread(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Listing:
    """One offer from a catalog: where, what, and its price in atomic units of ``asset``."""

    url: str
    kind: str  # "http" or "mcp"
    description: str
    service_name: str
    tags: tuple[str, ...]
    method: str | None
    tool_name: str | None
    scheme: str
    network: str
    asset: str
    pay_to: str
    amount: int

    @property
    def same_thing(self) -> tuple[str, str]:
        """What makes two listings the same thing sold twice: kind and description."""
        words = " ".join(self.description.casefold().split())
        return self.kind, words or f"{self.tool_name or ''} {urlsplit(self.url).path}"

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "type": self.kind,
            "description": self.description,
            "service_name": self.service_name or None,
            "tags": list(self.tags),
            "method": self.method,
            "tool_name": self.tool_name,
            "scheme": self.scheme,
            "network": self.network,
            "asset": self.asset,
            "pay_to": self.pay_to,
            "amount_atomic": self.amount,
        }


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found, or why the catalog could not be read (``error``, one line)."""

    listings: list[Listing]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PassedOver:
    """A listing not chosen, and why."""

    listing: Listing
    reason: str


def _text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(_CONTROL.sub(" ", value[: _TEXT_CHARS_MAX * 2]).split())[:_TEXT_CHARS_MAX]


def _short(value: object) -> str | None:
    return value if isinstance(value, str) and _SHORT.fullmatch(value) else None


def _url(value: object) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= _URL_CHARS_MAX:
        return None
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return value


def _listing(item: object) -> Listing | None:
    """One catalog item as a :class:`Listing`, or None when any part of it is not well formed."""
    if not isinstance(item, Mapping):
        return None
    accepts = item.get("accepts")
    offer = accepts[0] if isinstance(accepts, list) and accepts else None
    url = _url(item.get("resource"))
    kind = item.get("type")
    if url is None or kind not in ("http", "mcp") or not isinstance(offer, Mapping):
        return None
    amount = offer.get("amount")
    scheme, network = _short(offer.get("scheme")), _short(offer.get("network"))
    asset, pay_to = _short(offer.get("asset")), _short(offer.get("payTo"))
    if not isinstance(amount, str) or not _DIGITS.fullmatch(amount):
        return None
    if scheme is None or network is None or asset is None or pay_to is None:
        return None
    tags = item.get("tags")
    method, tool = _short(item.get("method")), _text(item.get("toolName")) or None
    return Listing(
        url=url,
        kind=str(kind),
        description=_text(item.get("description")),
        service_name=_text(item.get("serviceName")),
        tags=tuple(_text(t) for t in tags[:5] if _text(t)) if isinstance(tags, list) else (),
        method=method,
        tool_name=tool,
        scheme=scheme,
        network=network,
        asset=asset,
        pay_to=pay_to,
        amount=int(amount),
    )


async def discover(
    facilitator_url: str,
    query: str,
    *,
    amount_max: int | None = None,
    asset: str | None = None,
    network: str | None = None,
    limit: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver | None = None,
) -> Found:
    """Search the catalog at ``facilitator_url`` for ``query``: the well-formed listings found.

    From a catalog that is not on this machine or a private network, a
    listing whose host is local as written or whose name resolves to a
    non-global address (``resolver``, the system's by default; all names
    together at most ``RESOLVE_S_MAX``) is left out.
    """
    try:
        listings = await _search(
            facilitator_url, query, amount_max=amount_max, asset=asset, network=network,
            limit=limit, transport=transport, resolver=resolver,
        )  # fmt: skip
    except _Unread as unread:
        return Found([], unread.reason)
    return Found(listings)


async def _search(
    facilitator_url: str,
    query: str,
    *,
    amount_max: int | None,
    asset: str | None,
    network: str | None,
    limit: int,
    transport: httpx.AsyncBaseTransport | None,
    resolver: Resolver | None,
) -> list[Listing]:
    import httpx

    if not facilitator_url.startswith(("http://", "https://")):
        raise _Unread(f"the facilitator URL must be http(s)://, got {facilitator_url!r}")
    params: dict[str, str] = {"query": query[:256], "limit": str(max(1, min(limit, LIMIT_MAX)))}
    if amount_max is not None:
        params["maxAmount"] = str(amount_max)
    if asset is not None:
        params["asset"] = asset
    if network is not None:
        params["network"] = network
    url = facilitator_url.rstrip("/") + "/discovery/search"
    body = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT_S), transport=transport) as client,
            client.stream("GET", url, params=params) as response,
        ):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > RESPONSE_BYTES_MAX:
                    raise _Unread(f"the catalog's answer is larger than {RESPONSE_BYTES_MAX} bytes")
            status = response.status_code
    except httpx.HTTPError as exc:
        raise _Unread(
            f"cannot reach the catalog at {facilitator_url}: {type(exc).__name__}"
        ) from None
    if status == 400:
        raise _Unread(f"the catalog refused the search: {_message(body)}")
    if status != 200:
        raise _Unread(f"the catalog at {facilitator_url} answered HTTP {status}")
    try:
        data = httpx.Response(200, content=bytes(body)).json()
    except ValueError:
        raise _Unread("the catalog's answer is not JSON") from None
    items = data.get("resources") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise _Unread("the catalog's answer has no resources list")
    found = [_listing(item) for item in items[:LIMIT_MAX]]
    # A catalog anyone can list in must not steer the agent into its own
    # network (a GET to 169.254.169.254 or an admin page on 127.0.0.1, read
    # into the model's context); a catalog on this machine or network may.
    from farthing.paywall.discovery.metadata import local_host

    listed = [listing for listing in found if listing is not None]
    if local_host(urlsplit(facilitator_url).hostname or ""):
        return listed
    refused = await _resolved_local({urlsplit(x.url).hostname or "" for x in listed}, resolver)
    return [x for x in listed if (urlsplit(x.url).hostname or "") not in refused]


async def _resolved_local(hosts: set[str], resolver: Resolver | None) -> set[str]:
    """The hosts that are local as written or resolve to a non-global address; all looked up at once."""
    import anyio

    from farthing.paywall.discovery.resolver import SystemResolver, resolved_refusal

    asking = resolver if resolver is not None else SystemResolver()
    refused: set[str] = set()

    async def check(host: str) -> None:
        # Side by side, each name with the whole bound: together no longer than one.
        if await resolved_refusal(host, asking, timeout_s=RESOLVE_S_MAX) is not None:
            refused.add(host)

    async with anyio.create_task_group() as group:
        for host in sorted(hosts):
            group.start_soon(check, host)
    return refused


def _message(body: bytes | bytearray) -> str:
    import httpx

    try:
        data = httpx.Response(200, content=bytes(body)).json()
    except ValueError:
        return "(no reason given)"
    return _text(data.get("message")) if isinstance(data, dict) else "(no reason given)"


def cheapest_sellers(
    listings: Iterable[Listing], *, asset: str, network: str
) -> tuple[list[Listing], list[PassedOver]]:
    """Of each thing sold, the cheapest listing in ``asset`` on ``network``; the rest passed over."""
    best: dict[tuple[str, str], Listing] = {}
    passed: list[PassedOver] = []
    for listing in listings:
        if listing.network != network or listing.asset.lower() != asset.lower():
            passed.append(PassedOver(listing, "priced in another token or network"))
            continue
        key = listing.same_thing
        kept = best.get(key)
        if kept is None or listing.amount < kept.amount:
            if kept is not None:
                passed.append(PassedOver(kept, f"a cheaper seller offers the same: {listing.url}"))
            best[key] = listing
        else:
            passed.append(PassedOver(listing, f"a cheaper seller offers the same: {kept.url}"))
    return list(best.values()), passed


@dataclass(frozen=True, slots=True)
class Starts:
    """Where ``agent run --discover`` starts: the chosen URLs, the listings passed over, or why not."""

    urls: list[str]
    passed_over: list[Any]  # farthing.agents.runner.Skip, for the run's report
    error: str | None = None
    # What each chosen URL's listing said it costs: it was chosen over other
    # sellers for that price, so the run never pays more for it (AgentRun.listed).
    listed: dict[str, int] = field(default_factory=dict)


async def discovered_starts(
    facilitator_url: str,
    query: str,
    asset: Asset,
    *,
    progress: Callable[[str], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starts:
    """The pages to start a run from: per thing sold, its cheapest seller in the agent's token."""
    from farthing.agents.runner import Skip

    say = progress or (lambda message: None)
    found = await discover(
        facilitator_url,
        query,
        asset=asset.address,
        network=asset.network,
        limit=LIMIT_MAX,
        transport=transport,
    )
    if found.error is not None:
        return Starts([], [], found.error)
    pages = [x for x in found.listings if x.kind == "http" and x.method in (None, "GET")]
    kept, passed = cheapest_sellers(pages, asset=asset.address, network=asset.network)
    skips = [
        Skip(x.url, x.description, f"an MCP tool ({x.tool_name}): run with --mcp", x.amount)
        for x in found.listings
        if x.kind != "http"
    ]
    skips += [
        Skip(p.listing.url, p.listing.description, p.reason, p.listing.amount) for p in passed
    ]
    say(
        f"the catalog offers {len(found.listings)} listing(s) for {query!r}; starting from {len(kept)}"
    )
    return Starts([x.url for x in kept], skips, listed={x.url: x.amount for x in kept})


# ------------------------------------------------------------------ farthing agent discover


def discover_command(
    query: Annotated[str, typer.Argument(help="What to look for, e.g. 'weather paris'.")],
    facilitator: Annotated[
        str,
        typer.Option(
            "--facilitator",
            envvar="FARTHING_FACILITATOR_URL",
            help="The facilitator whose catalog to search.",
        ),
    ] = FACILITATOR_URL_DEFAULT,
    max_price: Annotated[
        str | None,
        typer.Option("--max-price", help="Only what costs at most this, e.g. 0.02 (USDC)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=LIMIT_MAX, help="At most this many.")
    ] = 20,
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List what can be bought from a facilitator's catalog, with prices; nothing is paid.

    Prices in the agent's token are shown in it; the catalog is what sellers
    said, so the agent prices a resource again from its own 402 before paying.
    """
    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, with_wallet=False
    )
    try:
        asset = workspace.target.asset
        cap = asset.parse(max_price) if max_price is not None else None
    finally:
        workspace.close()
    found = asyncio.run(
        discover(
            facilitator,
            query,
            amount_max=cap,
            asset=asset.address if cap is not None else None,
            network=asset.network if cap is not None else None,
            limit=limit,
        )
    )
    if found.error is not None:
        fail(found.error)

    def price(listing: Listing) -> str:
        ours = listing.network == asset.network and listing.asset.lower() == asset.address.lower()
        if ours:
            return asset.format(listing.amount)
        return f"{listing.amount} atomic units of {listing.asset} on {listing.network}"

    if as_json:
        emit_json(
            {
                "query": query,
                "facilitator": facilitator,
                "listings": [{**x.to_json(), "price": price(x)} for x in found.listings],
            }
        )
        return
    if not found.listings:
        out_console.print(f"nothing found for {query!r}", markup=False, highlight=False)
        return
    for listing in found.listings:
        what = listing.description or listing.service_name or listing.tool_name or ""
        line = f"{price(listing)}  {listing.scheme}  {listing.url}  {what}".rstrip()
        out_console.print(line, markup=False, highlight=False)
