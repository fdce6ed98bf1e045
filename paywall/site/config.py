"""The configuration of ``farthing paywall serve``: a TOML file, flags on top.

::

    upstream = "http://127.0.0.1:8000"      # the site being paywalled
    pay_to = "0x…"                           # default payee
    token = "0x…"                            # default asset, described by the chain at rpc_url
    rpc_url = "http://127.0.0.1:8545"
    key_file = "relayer.key"                 # local facilitator (default) …
    # facilitator_url = "http://…"           # … or a remote one
    # facilitator_token_file = "token"
    database_url = "sqlite:///paywall.sqlite"
    ledger_database_url = "sqlite:///ledger.sqlite"   # optional: book revenue
    rounding = "exact"                       # or "up" (see farthing.paywall.edge.pricing)
    receipt_secret_file = "receipt.secret"   # signs readers' receipts (random if left out)
    receipt_lifetime_s = 2592000             # a receipt reads the article again for 30 days
    public_url = "https://blog.example"      # the origin sign-in names; its host is answered
    allowed_hosts = ["www.blog.example"]     # more host names to answer (besides localhost)
    mcp = true                               # also serve MCP at /mcp (a fetch tool; docs/mcp.md)
    preview_selectors = ["article", "main"]  # the element cut to its preview on the 402 page

    [rates]
    CNY = "0.1385"                           # asset units per one CNY, as text

    [[routes]]
    path = "/articles/*"
    price = "0.01 USDC"
    preview_fraction = "0.3"                 # an article route
    [[routes]]
    path = "/api/**"
    methods = ["GET", "POST"]
    price = "0.1 CNY"
    schemes = ["exact", "batch-settlement"]  # also sell through channels (default ["exact"])

    [channels]                               # needed when a route offers batch-settlement
    receiver_authorizer_key_file = "authorizer.key"   # signs claims and refunds (mode 600)
    withdraw_delay_s = 900                   # the payer's withdraw delay, 900 s to 30 days
    min_deposit = "0.5 USDC"                 # optional: advertised as extra.minDeposit
    claim_interval_s = 30                    # how often the background claimer looks
    claim_every_s = 3600                     # claim a channel idle this long
    claim_threshold = "1 USDC"               # optional: claim once this much is unclaimed
    charge_lease_s = 60                      # a voucher's charge waits this long for its answer

    [discovery]                              # service metadata and /.well-known/x402;
    service_name = "Farthing Blog"           # each route may add [routes.discovery]
    tags = ["history"]                       # (farthing.paywall.discovery.settings)

Paths in the file are relative to the file. Every value is checked here, so a
mistake is one clear line at start-up; prices in ``[channels]`` are converted
with the asset read from the chain (``farthing.paywall.site.channels``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from farthing.paywall.discovery.declaration import SiteDiscovery
from farthing.paywall.discovery.settings import route_discovery, site_discovery
from farthing.paywall.edge.routes import SCHEMES, PaidRoute
from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.schemes.batch_settlement.vouchers import (
    WITHDRAW_DELAY_MAX_S,
    WITHDRAW_DELAY_MIN_S,
)
from farthing.paywall.site.channels import CHANNEL_KEYS, ChannelSettings

__all__ = ["ServeConfig", "load_config", "parse_rate_flags", "parse_route_flag"]

_ROUTE_FLAG_RE: Final = re.compile(
    r"^\s*(?:(?P<methods>[A-Z]+(?:,[A-Z]+)*)\s+)?(?P<path>/\S*)\s+(?P<price>.+?)\s*$"
)
_KNOWN_KEYS: Final = frozenset(
    {
        "upstream", "pay_to", "token", "rpc_url", "key_file", "facilitator_url",
        "facilitator_token_file", "database_url", "ledger_database_url", "rounding",
        "rates", "routes", "public_url", "receipt_secret_file", "receipt_lifetime_s",
        "preview_selectors", "channels", "allowed_hosts", "discovery", "mcp",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``farthing paywall serve`` needs to build the paywall."""

    upstream: str | None = None
    pay_to: str | None = None
    token: str | None = None
    rpc_url: str | None = None
    key_file: Path | None = None
    facilitator_url: str | None = None
    facilitator_token_file: Path | None = None
    database_url: str | None = None
    ledger_database_url: str | None = None
    public_url: str | None = None
    rounding: str = "exact"
    rates: dict[str, str] = field(default_factory=dict)
    routes: tuple[PaidRoute, ...] = ()
    receipt_secret_file: Path | None = None  # None: a random secret for this process only
    receipt_lifetime_s: int | None = None
    preview_selectors: tuple[str, ...] | None = None  # the article element, tried in order
    channels: ChannelSettings | None = None  # the [channels] table: batch-settlement is on
    allowed_hosts: tuple[str, ...] = ()  # host names answered besides loopback and public_url
    mcp: bool = False  # also serve MCP at /mcp: the fetch tool (farthing.paywall.mcp)
    discovery: SiteDiscovery | None = None  # [discovery] and [routes.discovery] (discovery.md)

    def with_flags(self, **flags: Any) -> ServeConfig:
        """Flags win over the file; routes given as flags are added after the file's.

        ``channels`` (a dict of :class:`ChannelSettings` fields) is laid over
        the file's ``[channels]`` table; any channel flag alone turns channels on.
        """
        extra_routes = tuple(flags.pop("routes", ()) or ())
        rates = {**self.rates, **(flags.pop("rates", None) or {})}
        channel_flags = {
            k: v for k, v in (flags.pop("channels", None) or {}).items() if v is not None
        }
        channels = self.channels
        if channel_flags:
            channels = (channels or ChannelSettings()).with_flags(**channel_flags)
        chosen = {k: v for k, v in flags.items() if v is not None}
        return replace(
            self, **chosen, rates=rates, routes=self.routes + extra_routes, channels=channels
        )


def parse_route_flag(text: str) -> PaidRoute:
    """``"[METHODS] PATH PRICE"``, e.g. ``"GET,POST /api/** 0.01 USDC"``."""
    match = _ROUTE_FLAG_RE.match(text)
    if match is None:
        raise PaywallConfigError(
            f"cannot read the route {text!r} (want e.g. 'GET /api/** 0.01 USDC')"
        )
    methods = tuple(match["methods"].split(",")) if match["methods"] else ("GET",)
    return PaidRoute(match["path"], match["price"], methods=methods)


def parse_rate_flags(pairs: list[str]) -> dict[str, str]:
    """``--rate CURRENCY=RATE`` flags, e.g. ``["CNY=0.1385"]``, as ``{"CNY": "0.1385"}``."""
    rates = {}
    for pair in pairs:
        currency, sep, rate = pair.partition("=")
        if not sep or not currency.strip() or not rate.strip():
            raise PaywallConfigError(
                f"--rate wants CURRENCY=RATE (asset units per one unit), got {pair!r}"
            )
        rates[currency.strip().upper()] = rate.strip()
    return rates


def _text(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise PaywallConfigError(f"{where}: {key} must be text")
    return value


def _route(data: object, index: int) -> PaidRoute:
    where = f"routes[{index}]"
    if not isinstance(data, dict):
        raise PaywallConfigError(f"{where} must be a table")
    unknown = set(data) - {
        "path",
        "price",
        "methods",
        "pay_to",
        "description",
        "mime_type",
        "preview_fraction",
        "preview_blocks",
        "max_timeout_seconds",
        "schemes",
        "discovery",
    }
    if unknown:
        raise PaywallConfigError(f"{where}: unknown keys {sorted(unknown)}")
    path = _text(data, "path", where)
    price = data.get("price")
    if path is None or price is None:
        raise PaywallConfigError(f"{where} needs a path and a price")
    if not isinstance(price, (str, int)) or isinstance(price, bool):
        raise PaywallConfigError(f"{where}: price must be text such as '0.01 USDC' or atomic units")
    methods = data.get("methods", ["GET"])
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise PaywallConfigError(f"{where}: methods must be a list of method names")
    fraction_text = data.get("preview_fraction")
    fraction: Decimal | None = None
    if fraction_text is not None:
        if not isinstance(fraction_text, str):
            raise PaywallConfigError(
                f'{where}: preview_fraction must be text such as "0.3" (no floats)'
            )
        try:
            fraction = Decimal(fraction_text)
        except InvalidOperation:
            raise PaywallConfigError(f"{where}: preview_fraction is not a number") from None
    timeout = data.get("max_timeout_seconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)):
        raise PaywallConfigError(f"{where}: max_timeout_seconds must be an integer")
    blocks = data.get("preview_blocks")
    if blocks is not None and (isinstance(blocks, bool) or not isinstance(blocks, int)):
        raise PaywallConfigError(f"{where}: preview_blocks must be a whole number such as 3")
    return PaidRoute(
        path=path,
        price=price,
        methods=tuple(m.upper() for m in methods),
        pay_to=_text(data, "pay_to", where),
        description=_text(data, "description", where) or "",
        mime_type=_text(data, "mime_type", where) or "",
        preview_fraction=fraction,
        preview_blocks=blocks,
        max_timeout_seconds=timeout,
        schemes=_schemes(data.get("schemes", ["exact"]), where),
    )


def _schemes(value: object, where: str) -> tuple[str, ...]:
    known = ", ".join(sorted(SCHEMES))
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise PaywallConfigError(f'{where}: schemes must be a list such as ["exact"] (of {known})')
    unknown = [s for s in value if s not in SCHEMES]
    if unknown:
        raise PaywallConfigError(f"{where}: unknown scheme {unknown[0][:40]!r} (want {known})")
    if len(set(value)) != len(value):
        raise PaywallConfigError(f"{where}: schemes lists a scheme twice")
    return tuple(value)


def _seconds(data: dict[str, Any], key: str, *, integer: bool = False) -> Any:
    value = data.get(key)
    if value is None:
        return None
    wrong = not isinstance(value, int) if integer else not isinstance(value, (int, float))
    if isinstance(value, bool) or wrong:
        what = "an integer" if integer else "a number"
        raise PaywallConfigError(f"channels.{key} must be {what} of seconds")
    if not value > 0:  # also refuses nan
        raise PaywallConfigError(f"channels.{key} must be positive")
    return value


def _channel_price(data: dict[str, Any], key: str) -> str | int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PaywallConfigError(
            f'channels.{key} must be text such as "0.5 USDC" or atomic units (no floats)'
        )
    return value


def _channels(data: object, path: Path) -> ChannelSettings:
    if not isinstance(data, dict):
        raise PaywallConfigError(f"{path}: channels must be a table ([channels])")
    unknown = set(data) - CHANNEL_KEYS
    if unknown:
        raise PaywallConfigError(f"{path}: [channels] has unknown keys {sorted(unknown)}")
    key_file = _text(data, "receiver_authorizer_key_file", "[channels]")
    delay_s = _seconds(data, "withdraw_delay_s", integer=True)
    if delay_s is not None and not WITHDRAW_DELAY_MIN_S <= delay_s <= WITHDRAW_DELAY_MAX_S:
        raise PaywallConfigError(
            f"channels.withdraw_delay_s must be {WITHDRAW_DELAY_MIN_S} to {WITHDRAW_DELAY_MAX_S} s "
            f"(the escrow's bounds), got {delay_s}"
        )
    return ChannelSettings(
        receiver_authorizer_key_file=(path.parent / key_file).resolve() if key_file else None,
        withdraw_delay_s=delay_s,
        min_deposit=_channel_price(data, "min_deposit"),
        claim_interval_s=_seconds(data, "claim_interval_s"),
        claim_every_s=_seconds(data, "claim_every_s"),
        claim_threshold=_channel_price(data, "claim_threshold"),
        charge_lease_s=_seconds(data, "charge_lease_s"),
    )


def load_config(path: Path) -> ServeConfig:
    """Read and check a TOML configuration file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PaywallConfigError(f"no configuration file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PaywallConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PaywallConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise PaywallConfigError(f"{path}: unknown keys {sorted(unknown)}")
    where = str(path)
    rates = data.get("rates", {})
    if not isinstance(rates, dict) or not all(isinstance(v, str) for v in rates.values()):
        raise PaywallConfigError(
            f'{path}: rates must map currencies to decimal text, e.g. CNY = "0.1385"'
        )
    routes = data.get("routes", [])
    if not isinstance(routes, list):
        raise PaywallConfigError(f"{path}: routes must be an array of tables ([[routes]])")

    lifetime = data.get("receipt_lifetime_s")
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int)):
        raise PaywallConfigError(f"{path}: receipt_lifetime_s must be an integer (seconds)")
    selectors = data.get("preview_selectors")
    if selectors is not None and (
        not isinstance(selectors, list)
        or not selectors
        or not all(isinstance(s, str) and s.strip() for s in selectors)
    ):
        raise PaywallConfigError(
            f'{path}: preview_selectors must be a list of CSS selectors, e.g. ["article", "main"]'
        )

    channels = _channels(data["channels"], path) if "channels" in data else None
    hosts = data.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise PaywallConfigError(
            f'{path}: allowed_hosts must be a list of host names, e.g. ["shop.example"]'
        )
    mcp = data.get("mcp", False)
    if not isinstance(mcp, bool):
        raise PaywallConfigError(f"{path}: mcp must be true or false")
    public_url = _text(data, "public_url", where)
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise PaywallConfigError(f"{path}: public_url must start with https:// or http://")
    parsed_routes = tuple(_route(route, i) for i, route in enumerate(routes))
    declared = [
        (parsed_routes[i].path, route_discovery(route["discovery"], f"{path}: routes[{i}]"))
        for i, route in enumerate(routes)
        if "discovery" in route
    ]
    discovery = site_discovery(data.get("discovery"), declared, where)
    for index, route in enumerate(parsed_routes):
        if "batch-settlement" in route.schemes and channels is None:
            raise PaywallConfigError(
                f"{path}: routes[{index}] offers batch-settlement but there is no [channels] "
                "table (add one with receiver_authorizer_key_file)"
            )

    def local(key: str) -> Path | None:
        text = _text(data, key, where)
        return None if text is None else (path.parent / text).resolve()

    return ServeConfig(
        upstream=_text(data, "upstream", where),
        pay_to=_text(data, "pay_to", where),
        token=_text(data, "token", where),
        rpc_url=_text(data, "rpc_url", where),
        key_file=local("key_file"),
        facilitator_url=_text(data, "facilitator_url", where),
        facilitator_token_file=local("facilitator_token_file"),
        database_url=_text(data, "database_url", where),
        ledger_database_url=_text(data, "ledger_database_url", where),
        public_url=public_url,
        allowed_hosts=tuple(hosts),
        rounding=_text(data, "rounding", where) or "exact",
        rates=dict(rates),
        routes=parsed_routes,
        receipt_secret_file=local("receipt_secret_file"),
        receipt_lifetime_s=lifetime,
        preview_selectors=tuple(selectors) if selectors is not None else None,
        channels=channels,
        discovery=discovery,
        mcp=mcp,
    )
