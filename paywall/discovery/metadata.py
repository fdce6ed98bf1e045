"""The service metadata a ``resource`` may carry, and the bazaar spec's soft-drop rules for it.

A seller names its service on the 402's ``resource`` object: ``serviceName``,
``tags`` and ``iconUrl`` (specs/extensions/bazaar.md, "Service Metadata on
``resource``"). Buyers echo that object into their payment, so whatever
reaches a facilitator is untrusted: :func:`clean_service_metadata` keeps only
the fields that pass the spec's rules and drops the rest, one field at a time.

- ``serviceName``: 1 to 32 printable ASCII characters;
- ``tags``: printable ASCII entries of 1 to 32 characters, deduplicated
  without regard to case (the first spelling wins), at most 5 kept;
- ``iconUrl``: at most 2048 characters, an absolute ``http``/``https`` URL
  without userinfo or control characters, whose host (percent-decoded, then
  IDN-normalised per UTS #46) is not an IP literal, a loopback name, all
  digits or a hex literal. The facilitator never fetches it either way.

The site's own configuration is held to the same rules
(:func:`check_service_metadata`), so a seller learns at start-up that a
facilitator would drop what it declares.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import idna

__all__ = [
    "ICON_URL_CHARS_MAX",
    "SERVICE_NAME_CHARS_MAX",
    "TAGS_MAX",
    "TAG_CHARS_MAX",
    "check_service_metadata",
    "clean_icon_url",
    "clean_service_metadata",
    "clean_service_name",
    "clean_tags",
    "local_host",
    "not_global",
]

SERVICE_NAME_CHARS_MAX: Final = 32
TAG_CHARS_MAX: Final = 32
TAGS_MAX: Final = 5
ICON_URL_CHARS_MAX: Final = 2048
# Looked at before anything is kept: a hostile list cannot make us walk a million entries.
_TAG_ENTRIES_SEEN_MAX: Final = 64

_PRINTABLE: Final = re.compile(r"[\x20-\x7e]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIGITS: Final = re.compile(r"\d+")
_HEX: Final = re.compile(r"0x[0-9a-f]+", re.IGNORECASE)
_LOOPBACK_NAMES: Final = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)


def _short_ascii(value: object, chars_max: int) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= chars_max:
        return None
    return value if _PRINTABLE.fullmatch(value) else None


def clean_service_name(value: object) -> str | None:
    """``value`` if it is a valid ``serviceName``, else None (the field is dropped)."""
    return _short_ascii(value, SERVICE_NAME_CHARS_MAX)


def clean_tags(value: object) -> tuple[str, ...]:
    """The valid entries of a ``tags`` list, deduplicated without case, at most five."""
    if not isinstance(value, list):
        return ()
    kept: list[str] = []
    seen: set[str] = set()
    for entry in value[:_TAG_ENTRIES_SEEN_MAX]:
        tag = _short_ascii(entry, TAG_CHARS_MAX)
        if tag is None or tag.lower() in seen:
            continue
        seen.add(tag.lower())
        kept.append(tag)
        if len(kept) == TAGS_MAX:
            break
    return tuple(kept)


def _safe_host(raw: str) -> bool:
    try:
        decoded = unquote(raw, errors="strict")
        host = idna.encode(decoded, uts46=True).decode("ascii").lower()
    except (UnicodeError, idna.IDNAError, ValueError):
        return False
    if not host or host in _LOOPBACK_NAMES or ":" in host:
        return False
    if _DIGITS.fullmatch(host) or _HEX.fullmatch(host):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def clean_icon_url(value: object) -> str | None:
    """``value`` if it is a safe ``iconUrl``, else None (the field is dropped)."""
    if not isinstance(value, str) or not 0 < len(value) <= ICON_URL_CHARS_MAX:
        return None
    if _CONTROL.search(value):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or not host:
        return None
    return value if _safe_host(host) else None


def clean_service_metadata(resource: object) -> dict[str, Any]:
    """The ``serviceName``, ``tags`` and ``iconUrl`` of a ``resource`` object that survive."""
    if not isinstance(resource, Mapping):
        return {}
    kept: dict[str, Any] = {}
    name = clean_service_name(resource.get("serviceName"))
    if name is not None:
        kept["serviceName"] = name
    tags = clean_tags(resource.get("tags"))
    if tags:
        kept["tags"] = list(tags)
    icon = clean_icon_url(resource.get("iconUrl"))
    if icon is not None:
        kept["iconUrl"] = icon
    return kept


def check_service_metadata(
    where: str, *, service_name: object, tags: object, icon_url: object
) -> str | None:
    """Why a seller's own metadata would be dropped by a facilitator, or None when it passes."""
    if service_name is not None and clean_service_name(service_name) is None:
        return f"{where}: service_name must be 1 to {SERVICE_NAME_CHARS_MAX} printable ASCII characters"
    if tags is not None:
        if not isinstance(tags, list) or len(tags) > TAGS_MAX:
            return f"{where}: tags must be a list of at most {TAGS_MAX} short words"
        if len(clean_tags(tags)) != len(tags):
            return (
                f"{where}: each tag must be 1 to {TAG_CHARS_MAX} printable ASCII characters, "
                "no two the same"
            )
    if icon_url is not None and clean_icon_url(icon_url) is None:
        return (
            f"{where}: icon_url must be an http(s) URL on a public host name (no IP, no localhost)"
        )
    return None


_LOCAL_HOST_NAMES: Final = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)
_LOCAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".home.arpa", ".lan")


def not_global(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is anything but a global one (an IPv4-mapped one judged as IPv4 too)."""
    mapped = getattr(address, "ipv4_mapped", None)
    return not address.is_global or (mapped is not None and not mapped.is_global)


def local_host(host: str) -> bool:
    """Whether ``host`` names this machine or a private network, in any spelling.

    A loopback or private name, or an IP literal that is not global, however
    it is written: percent-encoded, full-width, IPv4-mapped, or the decimal,
    hex and octal forms a resolver accepts (``2130706433``, ``0x7f.1``). A
    host that cannot be read counts as local. A public name that resolves to
    a private address is not caught here: ``farthing.paywall.discovery.resolver``
    asks the resolver.
    """
    text = host.strip("[]").lower().rstrip(".")
    try:
        return not_global(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        name = idna.encode(unquote(text, errors="strict"), uts46=True).decode("ascii").rstrip(".")
    except (UnicodeError, idna.IDNAError, ValueError):
        return True
    if not name or name in _LOCAL_HOST_NAMES or name.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        return not_global(ipaddress.IPv4Address(socket.inet_aton(name)))
    except OSError:
        return False
