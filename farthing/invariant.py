"""``invariant()``: an assertion that survives ``python -O``.

``assert`` statements vanish under optimisation, so anything money depends on
is checked with this helper instead.
"""

from __future__ import annotations

from farthing.errors import InvariantError

__all__ = ["invariant"]


def invariant(condition: object, message: str) -> None:
    """Raise ``InvariantError(message)`` unless ``condition`` is truthy."""
    if not condition:
        raise InvariantError(message)
