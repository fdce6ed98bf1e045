"""The spend policy: what an agent may pay, to whom, and when a person must say yes.

:class:`SpendPolicy` gathers every limit. It is durable: the money limits
live in the ledger's ``ledger_budget`` row (checked by the ledger in the same
database transaction as each reservation) and the rest in ``agent_policy``
(see ``farthing.agents.books``, which reads and writes both). Nothing a model
says and nothing a fetched page contains can change it: only the operator's
``farthing agent policy set`` or :meth:`AgentBooks.set_policy` do.

The checks here are small pure functions over (policy, request facts) that
return ``None`` or a snake_case reason; :func:`check_terms` runs them in order.

**The default is safe for a newcomer.** An agent whose policy nobody set gets
:func:`default_policy`: no money limit but the booked funds, and a person's
approval for any single payment above ``APPROVAL_ABOVE_DEFAULT`` (0.10 of the
token, as the x402 fetch client's default ``maxValue``). The threshold is an
ordinary part of the stored policy: ``farthing agent policy show`` prints it
and ``farthing agent policy set --approval-above AMOUNT|none`` changes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from farthing.agents.errors import AgentConfigError
from farthing.wallet.address import is_address
from farthing.wallet.money import Asset

__all__ = [
    "APPROVAL_ABOVE_DEFAULT",
    "APPROVAL_TIMEOUT_S_DEFAULT",
    "APPROVAL_TIMEOUT_S_MAX",
    "CHANNEL_WITHDRAW_DELAY_MAX_S_DEFAULT",
    "CHANNEL_WITHDRAW_DELAY_MAX_S_LIMIT",
    "SpendPolicy",
    "check_host",
    "check_payee",
    "check_terms",
    "default_approval_above",
    "default_policy",
    "host_matches",
    "needs_approval",
    "normalise_host",
]

# Above this, in the token, a payment waits for a person unless the policy says otherwise.
APPROVAL_ABOVE_DEFAULT: Final = Decimal("0.10")
APPROVAL_TIMEOUT_S_DEFAULT: Final = 300
APPROVAL_TIMEOUT_S_MAX: Final = 24 * 3600
# A channel deposit comes back only through a withdrawal that waits this long
# (the seller's choice); a longer wait is refused (channel_withdraw_delay_too_long).
CHANNEL_WITHDRAW_DELAY_MAX_S_DEFAULT: Final = 24 * 3600
CHANNEL_WITHDRAW_DELAY_MAX_S_LIMIT: Final = 366 * 24 * 3600
_LIST_LENGTH_MAX: Final = 1_000
_HOST_LENGTH_MAX: Final = 253


def normalise_host(host: str) -> str:
    """A host pattern as stored: lowercase, no port, ``*.`` allowed only in front."""
    text = host.strip().lower().rstrip(".")
    if text.startswith("*."):
        body = text[2:]
    else:
        body = text
    if not body or len(text) > _HOST_LENGTH_MAX or "*" in body or "/" in body or ":" in body:
        raise AgentConfigError(
            f"not a host name (write example.com, or *.example.com for its subdomains): {host!r}"
        )
    return text


def _payee(address: str) -> str:
    if not is_address(address.strip()):
        raise AgentConfigError(f"not an address (want 0x and 40 hex digits): {address!r}")
    return address.strip().lower()


def _bounded(items: Iterable[str], normalise: Callable[[str], str]) -> frozenset[str]:
    values = frozenset(normalise(item) for item in items)
    if len(values) > _LIST_LENGTH_MAX:
        raise AgentConfigError(f"a policy list holds at most {_LIST_LENGTH_MAX} entries")
    return values


@dataclass(frozen=True, slots=True)
class SpendPolicy:
    """Every limit on an agent's spending, in atomic units of its asset; ``None`` means no limit."""

    payment_cap: int | None = None
    daily_limit: int | None = None
    payee_daily_cap: int | None = None
    total_budget: int | None = None  # lifetime spend; the booked funds are a limit too
    asset_allowlist: frozenset[str] | None = None  # CAIP-19 ids, lowercase
    hosts_allowed: frozenset[str] | None = None
    hosts_denied: frozenset[str] = field(default_factory=frozenset)
    payees_allowed: frozenset[str] | None = None  # lowercase addresses
    payees_denied: frozenset[str] = field(default_factory=frozenset)
    approval_above: int | None = None  # payments above this wait for a person
    approval_timeout_s: int = APPROVAL_TIMEOUT_S_DEFAULT
    channel_withdraw_delay_max_s: int = CHANNEL_WITHDRAW_DELAY_MAX_S_DEFAULT

    def __post_init__(self) -> None:
        for name in (
            "payment_cap",
            "daily_limit",
            "payee_daily_cap",
            "total_budget",
            "approval_above",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"{name} must be an int of atomic units, got {type(value).__name__}"
                )
            if not 0 <= value < 2**63:
                raise AgentConfigError(f"{name} must be between 0 and 2**63 - 1 atomic units")
        timeout = self.approval_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError("approval_timeout_s must be an int of seconds")
        if not 0 < timeout <= APPROVAL_TIMEOUT_S_MAX:
            raise AgentConfigError(
                f"approval_timeout_s must be between 1 and {APPROVAL_TIMEOUT_S_MAX} seconds"
            )
        delay = self.channel_withdraw_delay_max_s
        if isinstance(delay, bool) or not isinstance(delay, int):
            raise TypeError("channel_withdraw_delay_max_s must be an int of seconds")
        if not 0 <= delay <= CHANNEL_WITHDRAW_DELAY_MAX_S_LIMIT:
            raise AgentConfigError(
                "channel_withdraw_delay_max_s must be between 0 and "
                f"{CHANNEL_WITHDRAW_DELAY_MAX_S_LIMIT} seconds"
            )
        if self.hosts_allowed is not None:
            object.__setattr__(self, "hosts_allowed", _bounded(self.hosts_allowed, normalise_host))
        object.__setattr__(self, "hosts_denied", _bounded(self.hosts_denied, normalise_host))
        if self.payees_allowed is not None:
            object.__setattr__(self, "payees_allowed", _bounded(self.payees_allowed, _payee))
        object.__setattr__(self, "payees_denied", _bounded(self.payees_denied, _payee))
        if self.asset_allowlist is not None:
            object.__setattr__(self, "asset_allowlist", _bounded(self.asset_allowlist, str.lower))

    # The JSON form of the lists, as ``agent_policy`` stores them.
    @staticmethod
    def dump_list(values: frozenset[str] | None) -> str | None:
        return None if values is None else json.dumps(sorted(values))

    @staticmethod
    def load_list(text: str | None) -> frozenset[str] | None:
        return None if text is None else frozenset(json.loads(text))


def default_approval_above(asset: Asset) -> int:
    """``APPROVAL_ABOVE_DEFAULT`` in the asset's atomic units (rounded down)."""
    return int(APPROVAL_ABOVE_DEFAULT.scaleb(asset.decimals))


def default_policy(asset: Asset) -> SpendPolicy:
    """The policy of an agent nobody configured: a person approves each payment above 0.10."""
    return SpendPolicy(approval_above=default_approval_above(asset))


def host_matches(host: str, pattern: str) -> bool:
    """``example.com`` matches only itself; ``*.example.com`` matches its subdomains."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def check_host(policy: SpendPolicy, host: str) -> str | None:
    if any(host_matches(host, p) for p in policy.hosts_denied):
        return "host_denied"
    if policy.hosts_allowed is not None and not any(
        host_matches(host, p) for p in policy.hosts_allowed
    ):
        return "host_not_allowed"
    return None


def check_payee(policy: SpendPolicy, pay_to: str) -> str | None:
    payee = pay_to.lower()
    if payee in policy.payees_denied:
        return "payee_denied"
    if policy.payees_allowed is not None and payee not in policy.payees_allowed:
        return "payee_not_allowed"
    return None


def needs_approval(policy: SpendPolicy, amount: int) -> bool:
    return policy.approval_above is not None and amount > policy.approval_above


def check_terms(policy: SpendPolicy, *, host: str, pay_to: str) -> str | None:
    """The first list that forbids paying ``pay_to`` for a resource on ``host``, or None.

    The money limits are not checked here: the ledger checks them when it
    reserves the payment, in the same database transaction.
    """
    return check_host(policy, host) or check_payee(policy, pay_to)
