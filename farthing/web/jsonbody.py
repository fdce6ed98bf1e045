"""Parse untrusted JSON only after bounding it (DESIGN.md §13).

``json.loads`` recurses once per nesting level. Under the default recursion
limit a deep document raises ``RecursionError``; under a raised limit it can
overflow the C stack and kill the process. So the nesting depth is measured
first, without recursion, and a document deeper than ``depth_max`` is refused
before the parser ever sees it.

The depth scan blanks out string literals with one regular expression, then
sums the remaining brackets with :func:`itertools.accumulate`: both run in C,
so a 1 MB body is scanned in a few milliseconds.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

from farthing.errors import FarthingError

__all__ = ["JSON_DEPTH_MAX_DEFAULT", "JsonBodyError", "json_depth", "loads_bounded"]

JSON_DEPTH_MAX_DEFAULT: Final = 32
JSON_BYTES_MAX_DEFAULT: Final = 1024 * 1024

# A JSON string literal: a quote, then anything but a quote or backslash, or
# any escaped character, then a quote. An unterminated string is left alone
# (the parser refuses it later; its brackets may count, which only refuses
# more).
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET: Final = re.compile(rb"[^\[\]{}]+")
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonBodyError(FarthingError, ValueError):
    """A JSON body was refused; ``reason`` is a snake_case word for the answer.

    Reasons: ``body_too_large``, ``json_too_deep``, ``invalid_json``,
    ``invalid_encoding``, ``invalid_text``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (0 for a scalar)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data))
    if not brackets:
        return 0
    return max(0, max(accumulate(_STEP[b] for b in brackets)))


def loads_bounded(
    data: bytes | str,
    *,
    depth_max: int = JSON_DEPTH_MAX_DEFAULT,
    bytes_max: int = JSON_BYTES_MAX_DEFAULT,
) -> Any:
    """``json.loads`` after refusing a body over ``bytes_max`` or ``depth_max``.

    Raises :class:`JsonBodyError` (never ``RecursionError``) for a body that is
    too large, too deep, not UTF-8, not JSON, or holding a string that is not
    Unicode text (a ``\\ud800`` escape parses to a lone surrogate, which no
    database, encoder or upstream can take). ``NaN`` and ``Infinity`` are
    refused: they are not JSON, and no amount may ever be one.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > bytes_max:
        raise JsonBodyError("body_too_large", f"the JSON body is over {bytes_max} bytes")
    # Nothing nests deeper than its count of opening brackets (counted in C,
    # far cheaper than the scan): most bodies and headers need no scan at all.
    if raw.count(b"[") + raw.count(b"{") > depth_max and json_depth(raw) > depth_max:
        raise JsonBodyError("json_too_deep", f"the JSON body nests deeper than {depth_max}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonBodyError("invalid_encoding", "the JSON body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise JsonBodyError("invalid_json", "the body is not valid JSON") from None
    # Only an escape can make a lone surrogate (the bytes were valid UTF-8),
    # so most bodies skip the walk.
    if "\\u" in text and not _is_text(value):
        raise JsonBodyError("invalid_text", "a string in the body is not Unicode text")
    return value


def _is_text(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
