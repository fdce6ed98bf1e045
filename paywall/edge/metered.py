"""A paid answer sent as it comes, charged by usage when it ends (``farthing.paywall.schemes.metering``).

The outer app asks for it per request (``scope["extensions"]["farthing.meter"]
= "asked"``). On a ``batch-settlement`` payment :func:`metered_run` gives
``ChannelPaywall.handle`` the step to run once the voucher's ceiling is held:
the handler runs **unbuffered**, with a
:class:`~farthing.paywall.schemes.batch_settlement.stream.ChannelMeter` in its
scope; its answer goes to the client as it is sent (private, never cached,
``Farthing-Charge`` stripped), the meter checkpoints what was sent while it
runs, and whatever happens the charge is made final when the handler ends.
On ``exact`` nothing changes: the marker stays a marker, and the handler,
finding no meter, refuses to stream (the price was fixed before the call).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from farthing.paywall.edge.asgi import EXPOSE, Send, header_of
from farthing.paywall.schemes.batch_settlement.holds import HeldCharge, Hold
from farthing.paywall.schemes.batch_settlement.server import (
    CHARGE_HEADER,
    ChannelPaywall,
    ChannelReply,
)
from farthing.paywall.schemes.batch_settlement.state import ChannelRecord
from farthing.paywall.schemes.batch_settlement.stream import ChannelMeter
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment
from farthing.paywall.schemes.batch_settlement.wire import parse_client_payload
from farthing.paywall.schemes.fields import WireRefusal
from farthing.paywall.schemes.metering import METER_ASKED, METER_EXTENSION

__all__ = ["meter_asked", "metered_run"]

MeteredRun = Callable[[Hold, ChannelRecord, str], Awaitable[ChannelReply]]


def meter_asked(scope: dict[str, Any]) -> bool:
    """The outer app asked for this request's answer to stream, charged when it ends."""
    return (scope.get("extensions") or {}).get(METER_EXTENSION) == METER_ASKED


def metered_run(
    app: Any,
    scope: dict[str, Any],
    receive: Any,
    send: Send,
    *,
    channels: ChannelPaywall,
    payment: ChannelPayment,
) -> MeteredRun | None:
    """The step ``ChannelPaywall.handle`` runs with the ceiling held; None unless it was asked for."""
    if not meter_asked(scope):
        return None

    async def run(hold: Hold, known: ChannelRecord, deposit_tx: str) -> ChannelReply:
        parsed = parse_client_payload(payment.payload)
        assert not isinstance(parsed, WireRefusal)  # handle() parsed it before holding
        offer = payment.accepted
        held = HeldCharge(
            hold, known, offer, parsed.config.payer, parsed.voucher.max_claimable_amount,
            deposit_tx,
        )  # fmt: skip
        meter = ChannelMeter(channels, held, lease_s=channels.options.charge_lease_s)
        await run_with_meter(app, scope, receive, send, meter)
        return ChannelReply(200)

    return run


async def run_with_meter(
    app: Any, scope: dict[str, Any], receive: Any, send: Send, meter: ChannelMeter
) -> None:
    """Run the handler unbuffered with ``meter`` in its scope; its charge is final when it ends."""
    inner = dict(scope)
    inner["extensions"] = {**(scope.get("extensions") or {}), METER_EXTENSION: meter}
    status = 0
    charge = CHARGE_HEADER.encode()

    async def relay(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [
                (bytes(k), bytes(v)) for k, v in message.get("headers", []) if k.lower() != charge
            ]
            if 200 <= status < 300:
                # Paid content must never be served from a shared cache to someone else.
                cache = header_of(headers, b"cache-control")
                headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                private = b"private" if not cache else f"private, {cache}".encode()
                headers += [
                    (b"cache-control", private),
                    (b"access-control-expose-headers", EXPOSE.encode()),
                ]
            message = {**message, "headers": headers}
        await send(message)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(meter.keep_alive)
            await app(inner, receive, relay)
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await meter.close(served=200 <= status < 300)
