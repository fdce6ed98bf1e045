"""The seam between a paid handler that streams and the scheme that charges it when it ends.

A handler whose answer's price is known only at its end (a streamed chat
completion, metered per token) cannot name its charge in a response header:
the headers went out with the first byte. So the app that wraps the paywall
**asks** for a meter on the request, and the scheme's server part **puts**
one in the handler's scope:

- the outer app sets ``scope["extensions"][METER_EXTENSION] = METER_ASKED``
  (an ASGI scope extension: a client cannot set one, only the server's own
  code);
- a scheme that charges usage (``batch-settlement`` today, ``upto`` later)
  runs the handler **unbuffered**, its answer sent as it comes, with a
  :class:`Meter` in ``scope["extensions"][METER_EXTENSION]``; ``exact``
  leaves the marker as it was, so a handler that finds no :class:`Meter`
  knows its answer cannot be charged by usage and refuses to stream;
- the handler reports what it has sent so far (:meth:`Meter.progress`,
  cumulative atomic units, at most the ceiling), then, once it knows the
  real usage, calls :meth:`Meter.finish` with the charge: the scheme makes
  it final (a channel's hold, or one settlement on chain for ``upto``) and
  returns the :class:`MeterReceipt`, the ``PAYMENT-RESPONSE`` the handler
  sends in its last event (or as a header, when it has sent nothing yet);
- a handler that ends without :meth:`Meter.finish` (it failed, the client
  left) is charged what it last reported sent; a non-2xx answer nothing.

Every amount is capped at the ceiling the payer signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["METER_ASKED", "METER_EXTENSION", "Meter", "MeterReceipt", "meter_of"]

METER_EXTENSION: Final = "farthing.meter"
METER_ASKED: Final = "asked"  # the outer app's request: "this answer streams; meter it"


@dataclass(frozen=True, slots=True)
class MeterReceipt:
    """A final charge: ``amount`` atomic units, and the settlement response that says so.

    ``settlement`` is the ``PAYMENT-RESPONSE`` object (``success``,
    ``network``, ``payer``, ``amount``, the scheme's ``extra``); ``header``
    is the same, base64 encoded as the header carries it. ``final`` is False
    when the charge could not be made final as asked (the hold lapsed
    meanwhile): ``amount`` is then what was charged before it did.
    """

    amount: int
    settlement: dict[str, Any]
    header: str
    final: bool = True


@runtime_checkable
class Meter(Protocol):
    """What a scheme puts in a streaming handler's scope."""

    @property
    def ceiling(self) -> int:
        """The most this request may be charged: what the payer signed for."""
        ...

    async def progress(self, amount: int) -> bool:
        """The charge for what was sent so far; False once it can no longer be charged (stop)."""
        ...

    async def finish(self, amount: int) -> MeterReceipt:
        """Charge ``amount`` (capped at the ceiling) as final; once."""
        ...


def meter_of(scope: Any) -> Meter | None:
    """The meter a scheme put in ``scope``, else None (unpaid, or paid by a fixed price)."""
    extensions = scope.get("extensions") or {}
    found = extensions.get(METER_EXTENSION)
    return found if isinstance(found, Meter) else None
