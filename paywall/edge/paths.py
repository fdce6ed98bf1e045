"""One canonical path per request: what routes match, and exactly what the app receives.

A paywall that matches one spelling of a path while the application behind
it serves another is a paywall with a side door: ``/posts/x/../a`` does not
look like ``/posts/*``, yet every upstream serves ``/posts/a`` for it. So the
path is made canonical once, before anything else looks at it, and that
canonical form is both matched against the routes and handed on (as
``scope["path"]`` and a re-encoded ``scope["raw_path"]``, which the reverse
proxy forwards byte for byte).

The rules, in order:

1. The path is read from the bytes the client sent (``raw_path``, falling
   back to the decoded ``path`` when a server does not provide it).
2. An *encoded* ``.``, ``/`` or ``\\`` (``%2e``, ``%2f``, ``%5c`` in any letter
   case), a literal ``\\``, or a NUL is refused with 400: servers disagree on
   what they mean, and no honest client needs them.
3. The rest is percent-decoded as UTF-8 (invalid UTF-8 is a 400). A ``;``
   in the decoded path (literal or ``%3b``) is refused with 400: Tomcat and
   Spring drop ``;`` path parameters, so ``/posts;/a`` would be served there
   as ``/posts/a``, a path this paywall never priced. A ``;`` in the query
   is the query's business.
4. Empty segments are dropped: ``//posts//a`` is ``/posts/a``. A trailing
   slash is kept, because applications route ``/docs/`` and ``/docs``
   differently; route matching tries the path with and without it.
5. Dot segments are removed as RFC 3986 section 5.2.4 says: ``/x/../posts/a``
   is ``/posts/a`` and ``/posts/a/.`` is ``/posts/a/``. A ``..`` never climbs
   above the root.

The result always starts with ``/`` and is a fixed point: canonicalising it
again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote_to_bytes

__all__ = ["PathRefusal", "canonical_path", "encode_path", "remove_dot_segments"]

PATH_BYTES_MAX: Final = 8192
_ENCODED_SEPARATOR: Final = re.compile(rb"%(?:2e|2f|5c|00)", re.IGNORECASE)
# What stays literal when the canonical path is encoded again (RFC 3986 pchar and '/').
_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"


@dataclass(frozen=True, slots=True)
class PathRefusal:
    """Why a request's path was refused (always answered with 400)."""

    reason: str
    message: str


_TOO_LONG: Final = PathRefusal("path_too_long", f"the path is longer than {PATH_BYTES_MAX} bytes")


def canonical_path(scope: dict[str, Any]) -> str | PathRefusal:
    """The canonical path of an ASGI HTTP request, or why it is refused."""
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)) and raw:
        target = bytes(raw).split(b"?", 1)[0]
        if len(target) > PATH_BYTES_MAX:
            return _TOO_LONG
        if not target.startswith(b"/"):
            return PathRefusal("invalid_path", "the path must start with '/'")
        if _ENCODED_SEPARATOR.search(target):
            return PathRefusal(
                "encoded_path_separator",
                "the path contains an encoded '.', '/', '\\' or NUL (%2e, %2f, %5c, %00)",
            )
        try:
            decoded = unquote_to_bytes(target).decode("utf-8")
        except UnicodeDecodeError:
            return PathRefusal("invalid_path_encoding", "the path is not valid UTF-8 once decoded")
    else:
        # The server decoded it already and kept no bytes: decoding again
        # would turn %252e into '.', so it is taken as it is.
        decoded = str(scope.get("path", ""))
        if len(decoded) > PATH_BYTES_MAX:
            return _TOO_LONG
        if not decoded.startswith("/"):
            return PathRefusal("invalid_path", "the path must start with '/'")
    if "\\" in decoded or "\x00" in decoded:
        return PathRefusal("invalid_path", "the path contains a backslash or a NUL")
    if ";" in decoded:
        return PathRefusal(
            "path_parameter", "the path contains a ';' (a path parameter, literal or %3b)"
        )
    return remove_dot_segments(decoded)


def remove_dot_segments(path: str) -> str:
    """``path`` without empty, ``.`` or ``..`` segments (RFC 3986 5.2.4, empty segments dropped)."""
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    trailing = len(segments) > 1 and segments[-1] in ("", ".", "..")
    canonical = "/" + "/".join(out)
    if trailing and out:
        canonical += "/"
    return canonical


def encode_path(path: str) -> bytes:
    """The canonical ``path`` as bytes to send on: the ``raw_path`` of the inner request."""
    return quote(path, safe=_PATH_SAFE).encode("ascii")
