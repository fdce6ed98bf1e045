"""Selling through ``batch-settlement`` channels from a command line: settings in, ``ChannelOptions`` out.

``farthing paywall serve`` (its ``[channels]`` table and ``--channel-*``
flags) and ``farthing inference gateway`` (its ``--channel-*`` flags) build
their :class:`~farthing.paywall.schemes.batch_settlement.server.ChannelOptions` here, the same
way:

- :class:`ChannelSettings` is what the user wrote: the receiver authorizer's
  key file, the withdraw delay, ``min_deposit`` and ``claim_threshold`` as
  prices (``"0.5 USDC"``, or atomic units), and the claim timing;
- :func:`load_receiver_authorizer` reads the key file by the one rule every
  secret follows (private to its owner, else refused with ``chmod 600``);
  the key is never printed, only its address;
- :func:`build_channel_options` opens the :class:`ChannelStore` on the
  payment database (its own table, its own engine) with the escrow at the
  network's settlement address, and converts the prices with the asset read
  from the chain;
- :func:`require_channel_facilitator` refuses, at start-up, a facilitator
  that cannot settle channel payloads on this network (a remote one is asked
  ``GET /supported``);
- :func:`background_claimer` and :class:`BackgroundClaims` run the
  claimer beside an app whose lifespan does not reach the paywall (the
  inference gateway).

The ``--channel-*`` options both commands take are declared once, in
:mod:`farthing.paywall.site.options`.

Every mistake is a :class:`~farthing.paywall.errors.PaywallConfigError` with
one line naming the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from farthing.paywall.errors import PaywallConfigError

if TYPE_CHECKING:
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
    from farthing.wallet.chain import Chain
    from farthing.wallet.money import Asset
    from farthing.wallet.signer import LocalSigner

__all__ = [
    "CHANNEL_KEYS",
    "BackgroundClaims",
    "ChannelSettings",
    "background_claimer",
    "build_channel_options",
    "load_receiver_authorizer",
    "require_channel_facilitator",
]

# The keys of a [channels] table, as ChannelSettings names them.
CHANNEL_KEYS: Final = frozenset(
    {
        "receiver_authorizer_key_file",
        "withdraw_delay_s",
        "min_deposit",
        "claim_interval_s",
        "claim_every_s",
        "claim_threshold",
        "charge_lease_s",
    }
)
_PROBE_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """What the user asked for; ``None`` takes :class:`ChannelOptions`' default."""

    receiver_authorizer_key_file: Path | None = None
    withdraw_delay_s: int | None = None
    min_deposit: str | int | None = None  # a price: "0.5 USDC", "$0.5", or atomic units
    claim_interval_s: float | None = None
    claim_every_s: float | None = None
    claim_threshold: str | int | None = None  # a price, like min_deposit
    charge_lease_s: float | None = None  # how long a charge waits for its answer

    def with_flags(self, **flags: Any) -> ChannelSettings:
        """Flags that were given win over the file's values."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})

    @property
    def given(self) -> bool:
        """Whether any setting is set (a flag alone turns channels on)."""
        return any(getattr(self, f.name) is not None for f in fields(self))


def load_receiver_authorizer(
    settings: ChannelSettings, *, passphrase_file: Path | None = None
) -> LocalSigner:
    """The receiver authorizer's signer, read from its private key file."""
    from farthing.paywall.keys import load_key_file

    path = settings.receiver_authorizer_key_file
    if path is None:
        raise PaywallConfigError(
            "channels need a receiver authorizer: set receiver_authorizer_key_file in "
            "[channels] or pass --channel-authorizer-key-file"
        )
    return load_key_file(path, passphrase_file=passphrase_file)


def _atomic(
    value: str | int | None,
    name: str,
    asset: Asset,
    rates: Mapping[str, Decimal | str],
    rounding: str,
) -> int | None:
    from farthing.paywall.edge.pricing import check_rate, parse_price

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PaywallConfigError(f"channels.{name} must be a price such as '0.5 USDC'")
    if isinstance(value, int):
        if value <= 0:
            raise PaywallConfigError(f"channels.{name} must be positive, got {value}")
        return value
    if rounding not in ("exact", "up"):
        raise PaywallConfigError(f"rounding must be 'exact' or 'up', got {rounding!r}")
    checked = {k.upper(): check_rate(k, v) for k, v in rates.items()}
    try:
        quote = parse_price(
            value, asset, rates=checked, rounding="up" if rounding == "up" else "exact"
        )
    except PaywallConfigError as exc:
        raise PaywallConfigError(f"channels.{name}: {exc}") from None
    return quote.amount


def build_channel_options(
    settings: ChannelSettings,
    *,
    chain: Chain,
    asset: Asset,
    database_url: str,
    authorizer: LocalSigner,
    rates: Mapping[str, Decimal | str] | None = None,
    rounding: str = "exact",
    claim_in_background: bool = True,
) -> ChannelOptions:
    """The paywall's channel options: a store on ``database_url``, prices in ``asset``."""
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore
    from farthing.paywall.schemes.batch_settlement.vouchers import (
        WITHDRAW_DELAY_MAX_S,
        WITHDRAW_DELAY_MIN_S,
        ChannelDomain,
    )
    from farthing.wallet.networks import CANONICAL_CHANNEL_CONTRACTS, network_for_chain_id

    delay_s = settings.withdraw_delay_s
    if delay_s is None:
        delay_s = WITHDRAW_DELAY_MIN_S
    if not WITHDRAW_DELAY_MIN_S <= delay_s <= WITHDRAW_DELAY_MAX_S:
        raise PaywallConfigError(
            f"channels.withdraw_delay_s must be {WITHDRAW_DELAY_MIN_S} to "
            f"{WITHDRAW_DELAY_MAX_S} s (the escrow's bounds), got {delay_s}"
        )
    min_deposit = _atomic(settings.min_deposit, "min_deposit", asset, rates or {}, rounding)
    threshold = _atomic(settings.claim_threshold, "claim_threshold", asset, rates or {}, rounding)
    timing: dict[str, float] = {}
    if settings.claim_interval_s is not None:
        timing["claim_interval_s"] = float(settings.claim_interval_s)
    if settings.claim_every_s is not None:
        timing["claim_every_s"] = float(settings.claim_every_s)
    interval_s = timing.get("claim_interval_s", 30.0)
    every_s = timing.get("claim_every_s", max(3600.0, interval_s))
    if not 0.05 <= interval_s <= 600:
        raise PaywallConfigError(
            f"channels.claim_interval_s must be 0.05 to 600 s, got {interval_s:g}"
        )
    if every_s < interval_s:
        raise PaywallConfigError("channels.claim_every_s must be at least claim_interval_s")
    timing["claim_every_s"] = every_s
    if settings.charge_lease_s is not None:
        lease_s = float(settings.charge_lease_s)
        if not 0.05 <= lease_s <= 86400:
            raise PaywallConfigError(
                f"channels.charge_lease_s must be 0.05 s to 24 h, got {lease_s:g}"
            )
        timing["charge_lease_s"] = lease_s
    known = network_for_chain_id(chain.chain_id)
    escrow_address = (known.channels if known else CANONICAL_CHANNEL_CONTRACTS).settlement
    if not chain.code_at(escrow_address):
        raise PaywallConfigError(
            f"no batch-settlement escrow at {escrow_address} on {chain.network} "
            "(on a local chain, farthing chain dev places it)"
        )
    store = ChannelStore(
        database_url,
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain, escrow_address),
    )
    return ChannelOptions(
        store,
        authorizer,
        withdraw_delay_s=delay_s,
        min_deposit=min_deposit,
        claim_threshold=threshold,
        claim_in_background=claim_in_background,
        **timing,
    )


def require_channel_facilitator(
    facilitator: object, network: str, *, probe_token: str | None = None
) -> None:
    """Refuse a facilitator that cannot settle batch-settlement payloads on ``network``.

    The in-process facilitator always can. A remote one is asked
    ``GET /supported`` through a client of its own (so the paywall's client
    is not tied to this short event loop); ``probe_token`` is its bearer token.
    """
    import anyio

    from farthing.paywall.errors import FacilitatorUnavailableError
    from farthing.paywall.facilitator.local import Supported
    from farthing.paywall.facilitator.remote import RemoteFacilitator
    from farthing.paywall.schemes.batch_settlement.facilitator import ChannelSettling

    if not isinstance(facilitator, ChannelSettling):
        raise PaywallConfigError(
            f"the facilitator {facilitator!r} cannot settle batch-settlement payments"
        )
    if not isinstance(facilitator, RemoteFacilitator):
        return
    probe = RemoteFacilitator(facilitator.url, token=probe_token, timeout_s=_PROBE_TIMEOUT_S)

    async def ask() -> Supported:
        try:
            return await probe.supported()
        finally:
            await probe.aclose()

    try:
        supported = anyio.run(ask)
    except FacilitatorUnavailableError as exc:
        raise PaywallConfigError(f"cannot ask the facilitator for channel support: {exc}") from None
    if network not in supported.channel_networks:
        raise PaywallConfigError(
            f"the facilitator at {facilitator.url} does not list batch-settlement on {network} "
            "in /supported: channels need one that does (farthing facilitator serve does)"
        )


def background_claimer(options: ChannelOptions, facilitator: object, books: object = None) -> Any:
    """A :class:`~farthing.paywall.schemes.batch_settlement.claims.ChannelClaimer` for an app that runs one itself.

    For an app whose lifespan does not reach the paywall middleware (the
    inference gateway answers it on its own): build ``options`` with
    ``claim_in_background=False`` and serve :class:`BackgroundClaims`.
    ``books`` (a ``ChannelRevenueBook``) books the claims as they land.
    """
    from farthing.paywall.records.books import ChannelRevenueBook
    from farthing.paywall.schemes.batch_settlement.books import ChannelBookkeeper
    from farthing.paywall.schemes.batch_settlement.server import claimer_of

    bookkeeper = (
        ChannelBookkeeper(books, options.store) if isinstance(books, ChannelRevenueBook) else None
    )
    return claimer_of(options, facilitator, bookkeeper)


class BackgroundClaims:
    """An ASGI app that runs ``claimer`` for as long as ``app``'s lifespan lasts."""

    def __init__(self, app: Any, claimer: Any) -> None:
        self.app = app
        self.claimer = claimer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        import anyio

        async with anyio.create_task_group() as group:
            group.start_soon(self.claimer.run)
            try:
                await self.app(scope, receive, send)
            finally:
                group.cancel_scope.cancel()
