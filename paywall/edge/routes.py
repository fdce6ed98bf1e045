"""Paid routes: which requests cost what, matched by method and path glob.

A :class:`PaidRoute` names its methods and a path glob (``*`` matches within
one path segment, ``**`` across segments, ``?`` one character), its price
(static text, atomic units, or a callable for per-call APIs), and optionally
its own ``pay_to``, asset (hence network) and ``max_timeout_seconds``; what a
route leaves out comes from the paywall's defaults. A route with a
``preview_fraction`` is an *article* route: its 402 carries the first part of
the article for free.

:class:`RouteTable` resolves everything static when it is built, so a price
that does not convert exactly fails at start-up, not on a customer's request.
It matches canonical paths only (``farthing.paywall.edge.paths``), methods in any
letter case, and a path with a trailing slash as well as without it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from farthing.paywall.edge.pricing import Quote, Rounding, check_rate, parse_price, quote_atomic
from farthing.paywall.errors import PaywallConfigError, PriceError
from farthing.paywall.wire import PaymentRequirements
from farthing.wallet.address import checksum
from farthing.wallet.errors import AddressError
from farthing.wallet.money import Asset

__all__ = [
    "MAX_TIMEOUT_SECONDS_DEFAULT",
    "SCHEMES",
    "PaidRoute",
    "PriceFunction",
    "PriceRequest",
    "ResolvedRoute",
    "RouteTable",
    "compile_glob",
]

MAX_TIMEOUT_SECONDS_DEFAULT: Final = 300
_METHOD_RE: Final = re.compile(r"^[A-Z]{3,10}$")


@dataclass(frozen=True, slots=True)
class PriceRequest:
    """What a dynamic price function sees of the request."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


PriceValue = str | int | Quote
PriceFunction = Callable[[PriceRequest], PriceValue | Awaitable[PriceValue]]


@dataclass(frozen=True, slots=True)
class PaidRoute:
    """A priced route. ``price`` is ``"0.01 USDC"``, ``"0.1 CNY"``, atomic units, or a function."""

    path: str
    price: str | int | PriceFunction
    methods: tuple[str, ...] = ("GET",)
    pay_to: str | None = None
    asset: Asset | None = None
    max_timeout_seconds: int | None = None
    description: str = ""
    mime_type: str = ""
    preview_fraction: Decimal | None = None  # set for article routes: the free share
    preview_blocks: int | None = None  # or (and) at most this many whole blocks free
    # x402 schemes offered, in ``accepts`` order: "exact", "batch-settlement"
    # (needs ``PaywallOptions.channels``), "upto" (the price is a ceiling; the
    # facilitator must settle upto).
    schemes: tuple[str, ...] = ("exact",)
    # upto: what the handler's answer costs (atomic units, capped at the price),
    # read from its buffered answer (farthing.paywall.edge.upto.charge_of); None
    # reads its Farthing-Charge header, else charges the whole price.
    usage: Callable[[Any], int] | None = None


SCHEMES: Final = frozenset({"exact", "batch-settlement", "upto"})


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    """A route with its defaults filled in and its static price already quoted."""

    route: PaidRoute
    pattern: re.Pattern[str]
    methods: frozenset[str]
    pay_to: str
    asset: Asset
    max_timeout_seconds: int
    static_quote: Quote | None
    preview_fraction: Decimal | None
    rates: Mapping[str, Decimal] = field(default_factory=dict)
    preview_blocks: int | None = None
    rounding: Rounding = "exact"
    schemes: tuple[str, ...] = ("exact",)

    @property
    def is_article(self) -> bool:
        return self.preview_fraction is not None or self.preview_blocks is not None

    @property
    def preview_share(self) -> Decimal:
        """The free share to cut at: the fraction, else all but never the whole (blocks only)."""
        if self.preview_fraction is not None:
            return self.preview_fraction
        return Decimal(1) if self.preview_blocks is not None else Decimal(0)

    def matches(self, path: str) -> bool:
        """Whether the canonical ``path`` is this route's, with or without its trailing slash.

        Upstreams commonly serve ``/posts/a/`` as ``/posts/a``, so a route
        charges for both spellings: it may charge more, never less.
        """
        if self.pattern.match(path):
            return True
        return len(path) > 1 and path.endswith("/") and self.pattern.match(path[:-1]) is not None

    async def quote(self, request: PriceRequest) -> Quote:
        """The price of this request: the static quote, or the price function's answer."""
        if self.static_quote is not None:
            return self.static_quote
        function = self.route.price
        if not callable(function):  # pragma: no cover - RouteTable guarantees it
            raise PaywallConfigError("a route without a static price needs a price function")
        value: Any = function(request)
        if inspect.isawaitable(value):
            value = await value
        return _to_quote(value, self.asset, self.rates, self.rounding)

    def requirements(self, quote: Quote) -> PaymentRequirements:
        return PaymentRequirements(
            network=quote.asset.network,
            asset=quote.asset.address,
            amount=quote.amount,
            pay_to=self.pay_to,
            max_timeout_seconds=self.max_timeout_seconds,
            token_name=quote.asset.name,
            token_version=quote.asset.version,
        )


def compile_glob(glob: str) -> re.Pattern[str]:
    """A path glob as a regex: ``*`` within a segment, ``**`` across, ``?`` one character."""
    if not glob.startswith("/"):
        raise PaywallConfigError(f"a route path must start with '/', got {glob!r}")
    out = []
    index = 0
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
        index += 1
    return re.compile("^" + "".join(out) + "$")


def _to_quote(
    value: object, asset: Asset, rates: Mapping[str, Decimal], rounding: Rounding
) -> Quote:
    if isinstance(value, Quote):
        return value
    if isinstance(value, bool):
        raise PriceError("a price must be text or atomic units, not a bool")
    if isinstance(value, int):
        return quote_atomic(value, asset)
    if isinstance(value, str):
        return parse_price(value, asset, rates=rates, rounding=rounding)
    raise PriceError(f"a price must be text, atomic units or a Quote, got {type(value).__name__}")


class RouteTable:
    """The paywall's routes, checked once; :meth:`match` finds the first that applies."""

    def __init__(
        self,
        routes: Sequence[PaidRoute],
        *,
        pay_to: str | None = None,
        asset: Asset | None = None,
        rates: Mapping[str, Decimal | str] | None = None,
        rounding: Rounding = "exact",
    ) -> None:
        if rounding not in ("exact", "up"):
            raise PaywallConfigError(f"rounding must be 'exact' or 'up', got {rounding!r}")
        checked_rates = {k.upper(): check_rate(k, v) for k, v in (rates or {}).items()}
        self.rates: Mapping[str, Decimal] = checked_rates
        self.rounding: Rounding = rounding
        self._routes = tuple(self._resolve(r, pay_to, asset) for r in routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Any:
        return iter(self._routes)

    def match(self, method: str, path: str) -> ResolvedRoute | None:
        """The first route charging ``method`` (any letter case) at the canonical ``path``."""
        method = method.upper()
        for resolved in self._routes:
            if method in resolved.methods and resolved.matches(path):
                return resolved
        return None

    def methods_at(self, path: str) -> frozenset[str]:
        """Every method some route charges for at ``path``; empty where the path is free."""
        charged: set[str] = set()
        for resolved in self._routes:
            if resolved.matches(path):
                charged |= resolved.methods
        return frozenset(charged)

    def _resolve(self, route: PaidRoute, pay_to: str | None, asset: Asset | None) -> ResolvedRoute:
        if not isinstance(route, PaidRoute):
            raise PaywallConfigError(f"routes must be PaidRoute values, got {type(route).__name__}")
        methods = frozenset(m.upper() for m in route.methods)
        if not methods or not all(_METHOD_RE.match(m) for m in methods):
            raise PaywallConfigError(f"route {route.path}: methods must be HTTP method names")
        target = route.pay_to or pay_to
        chosen = route.asset or asset
        if target is None:
            raise PaywallConfigError(
                f"route {route.path}: no pay_to address (set one per route or a default)"
            )
        if chosen is None:
            raise PaywallConfigError(
                f"route {route.path}: no asset (set one per route or a default)"
            )
        try:
            target = checksum(target)
        except AddressError as exc:
            raise PaywallConfigError(f"route {route.path}: pay_to: {exc}") from None
        timeout = route.max_timeout_seconds or MAX_TIMEOUT_SECONDS_DEFAULT
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int)
            or not 0 < timeout <= 7 * 86400
        ):
            raise PaywallConfigError(
                f"route {route.path}: max_timeout_seconds must be 1 s to a week"
            )
        fraction = route.preview_fraction
        if fraction is not None:
            if isinstance(fraction, float) or not isinstance(fraction, (Decimal, str, int)):
                raise PaywallConfigError(f"route {route.path}: preview_fraction must be a Decimal")
            fraction = Decimal(fraction)
            if not 0 <= fraction < 1:
                raise PaywallConfigError(f"route {route.path}: preview_fraction must be in [0, 1)")
        blocks = route.preview_blocks
        if blocks is not None and (
            isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks <= 10_000
        ):
            raise PaywallConfigError(f"route {route.path}: preview_blocks must be 0 to 10000")
        schemes = tuple(route.schemes)
        if route.usage is not None and (not callable(route.usage) or "upto" not in schemes):
            raise PaywallConfigError(f"route {route.path}: usage is a function, for upto routes")
        if not schemes or len(set(schemes)) != len(schemes) or not set(schemes) <= SCHEMES:
            raise PaywallConfigError(
                f"route {route.path}: schemes must be distinct, from {sorted(SCHEMES)}"
            )
        static: Quote | None = None
        if callable(route.price):
            static = None
        else:
            try:
                static = _to_quote(route.price, chosen, self.rates, self.rounding)
            except PriceError as exc:
                raise PriceError(f"route {route.path}: {exc}") from None
        return ResolvedRoute(
            route=route,
            pattern=compile_glob(route.path),
            methods=methods,
            pay_to=target,
            asset=chosen,
            max_timeout_seconds=timeout,
            static_quote=static,
            preview_fraction=fraction,
            preview_blocks=blocks,
            rates=self.rates,
            rounding=self.rounding,
            schemes=schemes,
        )
