"""Whether a public-looking host name resolves into this machine or a private network.

:func:`~farthing.paywall.discovery.metadata.local_host` reads a host as it is
written: a loopback or private name, or an IP literal that is not global in
any spelling. A name anyone can register (``internal.attacker.example``) may
still resolve to ``127.0.0.1`` or ``10.0.0.5``; only asking the resolver
tells. :func:`resolved_refusal` asks it, bounded in time, and answers
``"private_resource_url"`` when the name is local as written or one of its
addresses is not global (loopback, private, link-local such as
``169.254.169.254``, an IPv4-mapped private address, an address that does
not parse), else ``None``.

A name that does not resolve, or whose resolver does not answer within
``timeout_s`` (a slow DNS server costs at most that, never a hang), is not
refused: it points nowhere now, and a name's owner can make it point
anywhere later (DNS rebinding), which no check made once can stop. This
check stops the name that points into a private network when it is looked
at; whoever fetches the URL still judges it then.

The resolver is a seam (:class:`Resolver`): :class:`SystemResolver` asks the
operating system (``getaddrinfo`` in a worker thread); tests pass a fake.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import Final, Protocol

import anyio

from farthing.paywall.discovery.metadata import local_host, not_global

__all__ = [
    "RESOLVE_TIMEOUT_S_DEFAULT",
    "Resolver",
    "SystemResolver",
    "resolved_refusal",
]

RESOLVE_TIMEOUT_S_DEFAULT: Final = 2.0

logger = logging.getLogger(__name__)


class Resolver(Protocol):
    """Answers a host name's addresses (IP literals as text); raises ``OSError`` when it cannot."""

    async def addresses(self, host: str) -> Sequence[str]: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), each answer in a worker thread."""

    def __repr__(self) -> str:
        return "SystemResolver()"

    async def addresses(self, host: str) -> Sequence[str]:
        infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]


async def resolved_refusal(
    host: str, resolver: Resolver, *, timeout_s: float = RESOLVE_TIMEOUT_S_DEFAULT
) -> str | None:
    """``"private_resource_url"`` for a host that is or resolves local (see the module doc), else None."""
    if local_host(host):
        return "private_resource_url"
    name = host.strip("[]").rstrip(".")
    found: Sequence[str] = ()
    with anyio.move_on_after(timeout_s) as waited:
        try:
            found = await resolver.addresses(name)
        except (OSError, UnicodeError, ValueError) as exc:
            logger.debug("%s does not resolve (%s)", name, type(exc).__name__)
    if waited.cancelled_caught:
        logger.info("the resolver did not answer for %s within %s s", name, timeout_s)
    for text in found:
        try:
            # A scoped IPv6 address (fe80::1%eth0) is judged without its zone.
            address = ipaddress.ip_address(str(text).split("%", 1)[0])
        except ValueError:
            return "private_resource_url"  # not an address: nothing to call it global by
        if not_global(address):
            return "private_resource_url"
    return None
